"""Celery tasks: wake-up calls for the projectors (filled in with the engine)."""


def nudge_after_commit() -> None:
    return None
