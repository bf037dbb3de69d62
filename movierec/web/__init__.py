"""The Flask site: ``gunicorn "movierec.web:create_app()"``.

One blueprint per feature (auth, movies, ratings, recommendations, account, api, admin,
health); the recommender is reached over HTTP through :class:`AIClient` only.
"""

from movierec.web.ai_client import AIAnswer, AIClient, AIUnavailable, Scored
from movierec.web.app import close_app, create_app

__all__ = ["AIAnswer", "AIClient", "AIUnavailable", "Scored", "close_app", "create_app"]
