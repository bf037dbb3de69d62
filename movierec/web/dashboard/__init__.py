"""The operator's dashboard (admins only): the cluster, the database, the models and how
they do online, one panel module each, and the actions the CLI offers on them."""

from movierec.web.dashboard.views import bp

__all__ = ["bp"]
