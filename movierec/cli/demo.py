"""``movierec demo``: the whole product on this machine, in the foreground."""


def demo() -> None:
    """Start everything for a demo."""
