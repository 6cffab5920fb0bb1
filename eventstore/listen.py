"""Dedicated PostgreSQL connections (for LISTEN), outside Django's pool."""

from typing import Any

from django.db import connections

# What Django's own connections take and psycopg.connect does not want.
_DJANGO_ONLY = ("cursor_factory", "context", "prepare_threshold", "pool")


def connection_params(alias: str) -> dict[str, Any]:
    """psycopg.connect's arguments for a connection of its own to ``alias``:
    Django's, with every option of the database URL (``sslmode``,
    ``connect_timeout``, ``application_name``...)."""
    params: dict[str, Any] = connections[alias].get_connection_params()
    for django_only in _DJANGO_ONLY:
        params.pop(django_only, None)
    return params


def listening_connection(alias: str, channel: str) -> Any:
    """An autocommit psycopg connection to ``alias`` that listens on ``channel``."""
    import psycopg

    connection = psycopg.connect(**connection_params(alias), autocommit=True)
    connection.execute(f"LISTEN {channel}")
    return connection
