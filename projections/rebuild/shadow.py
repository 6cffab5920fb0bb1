"""The shadow: the read side being rebuilt, beside the live one (a schema of
its own on PostgreSQL, a file of its own on SQLite), and how a process points
its ``read`` connection at it."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections

from eventstore.databases import READ_DB
from projections.models import (
    Checkpoint,
    ParkedEvent,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
    SellerReadModel,
)

SHADOW_SCHEMA = "projections_rebuild"
RETIRED_SCHEMA = "projections_retired"
# Checkpoint first: the swap locks tables in this order, and a projector batch
# touches the checkpoint table first, so the two never deadlock.
SWAPPED_MODELS = (
    Checkpoint,
    ProductReadModel,
    SellerReadModel,
    ReviewReadModel,
    RelatedLink,
    ProductFacts,
    SellerFacts,
    ParkedEvent,
)
# Locked with the others, but not replaced: see ``swap.keep_parked_history``.
REPLACED_TABLES = [m._meta.db_table for m in SWAPPED_MODELS if m is not ParkedEvent]
Progress = Callable[[str, int, int], None]


def live_settings() -> dict[str, Any]:
    return settings.DATABASES[READ_DB]


def is_postgres() -> bool:
    return bool(live_settings()["ENGINE"].endswith("postgresql"))


def shadow_file() -> Path:
    live = Path(live_settings()["NAME"])
    return live.with_name(f"{live.stem}.rebuild{live.suffix}")


@contextlib.contextmanager
def shadow_alias() -> Iterator[None]:
    """Point this thread's ``read`` connection at the shadow for the block.

    The connection gets a settings dict of its own: the one it was made with
    is shared by every thread's connection. On PostgreSQL it is a connection
    of its own, opened for the block and closed after it, never one from the
    live alias's pool (``DATABASE_POOL``): Django keys its pools by alias, so
    a pooled connection would come with the live search path, and the
    rebuild would write into the live tables. Checked before the block runs.
    """
    connection = connections[READ_DB]
    original = connection.settings_dict
    redirected = dict(original)
    if is_postgres():
        options = {
            key: value for key, value in original.get("OPTIONS", {}).items() if key != "pool"
        }
        # After the URL's own server options, if any: the last setting wins.
        server_options = f"{options.get('options', '')} -c search_path={SHADOW_SCHEMA}"
        options["options"] = server_options.strip()
        redirected["OPTIONS"] = options
    else:
        redirected["NAME"] = str(shadow_file())
    connection.close()
    connection.settings_dict = redirected
    try:
        if is_postgres():
            _check_on_shadow(connection)
        yield
    finally:
        connection.close()
        connection.settings_dict = original


def _check_on_shadow(connection: Any) -> None:
    """Refuse to go on unless ``connection`` reads and writes the shadow schema."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path'), current_schema()")
        search_path, schema = cursor.fetchone()
    if connection.pool is not None or schema != SHADOW_SCHEMA:
        raise RuntimeError(
            f"The rebuild's connection is not on its shadow (search_path {search_path!r}, "
            f"pooled: {connection.pool is not None}); nothing was written."
        )


def shadow_exists() -> bool:
    if not is_postgres():
        return shadow_file().exists()
    with connections[READ_DB].cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [SHADOW_SCHEMA]
        )
        return cursor.fetchone() is not None


def drop_shadow() -> None:
    if is_postgres():
        with connections[READ_DB].cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{shadow_file()}{suffix}").unlink(missing_ok=True)


def create_shadow() -> None:
    drop_shadow()
    if is_postgres():
        with connections[READ_DB].cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
    with shadow_alias():
        call_command("migrate", database=READ_DB, interactive=False, verbosity=0)


def analyze_read_side() -> None:
    """Give the planner statistics of the read models' tables on this thread's
    ``read`` connection. Tables just filled from empty have none until
    autovacuum comes by (a minute or more): the planner takes them for empty
    and looks up the projectors' facts by scanning the whole partition."""
    if not is_postgres():
        return
    with connections[READ_DB].cursor() as cursor:
        for model in SWAPPED_MODELS:
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def analyze_shadow() -> None:
    """Statistics of the shadow's tables before they go live (a snapshot's
    backfill gathers its own)."""
    with shadow_alias():
        analyze_read_side()
