"""A dedicated PostgreSQL connection for LISTEN, outside Django's pool."""

from typing import Any

from django.db import connections


def listening_connection(alias: str, channel: str) -> Any:
    """An autocommit psycopg connection to ``alias`` that listens on ``channel``."""
    import psycopg

    settings_dict = connections[alias].settings_dict
    connection = psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
        autocommit=True,
    )
    connection.execute(f"LISTEN {channel}")
    return connection
