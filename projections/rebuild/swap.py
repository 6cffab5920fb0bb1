"""Swapping the shadow in under a short lock, keeping the parked events' history."""

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

from eventstore.databases import READ_DB
from projections.engine import (
    notify_checkpoints_changed,
)
from projections.models import (
    Checkpoint,
    ParkedEvent,
)
from projections.rebuild.replay import catch_up_shadow
from projections.rebuild.shadow import (
    REPLACED_TABLES,
    RETIRED_SCHEMA,
    SHADOW_SCHEMA,
    SWAPPED_MODELS,
    drop_shadow,
    is_postgres,
    live_settings,
    shadow_file,
)


def swap(batch_size: int) -> float:
    """Swap the shadow in under a short lock; returns how long readers waited."""
    if is_postgres():
        return _swap_postgres(batch_size)
    return _swap_sqlite(batch_size)


def _swap_postgres(batch_size: int) -> float:
    tables = [model._meta.db_table for model in SWAPPED_MODELS]
    live = connections[READ_DB]
    with transaction.atomic(using=READ_DB), live.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '30s'")
        locked = time.monotonic()
        cursor.execute(
            f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE"
        )
        # The live projectors wait on the lock; the shadow takes the last events.
        catch_up_on_new_connection(batch_size)
        keep_parked_history(cursor.execute, live="public", shadow=SHADOW_SCHEMA)
        cursor.execute(f"CREATE SCHEMA {RETIRED_SCHEMA}")
        for table in REPLACED_TABLES:
            cursor.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED_SCHEMA}")
            cursor.execute(f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public")
        cursor.execute(f"DROP SCHEMA {RETIRED_SCHEMA} CASCADE")
        cursor.execute(f"DROP SCHEMA {SHADOW_SCHEMA} CASCADE")
        notify_checkpoints_changed()
        waited = time.monotonic() - locked
    return waited


def catch_up_on_new_connection(batch_size: int) -> None:
    """Catch the shadow up on a thread of its own: this thread's ``read``
    connection is holding the swap's transaction."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            catch_up_shadow(batch_size)
        except BaseException as error:  # handed back to the caller
            errors.append(error)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def _swap_sqlite(batch_size: int) -> float:
    tables = REPLACED_TABLES
    # The shadow's rows and checkpoints replace the live ones together, so what
    # the live projectors apply meanwhile is simply applied again afterwards.
    catch_up_on_new_connection(batch_size)
    live = sqlite3.connect(live_settings()["NAME"], timeout=30, isolation_level=None)
    try:
        live.execute("ATTACH DATABASE ? AS rebuild", [str(shadow_file())])
        locked = time.monotonic()
        live.execute("BEGIN IMMEDIATE")
        for table in tables:
            live.execute(f"DELETE FROM main.{table}")  # noqa: S608
            live.execute(f"INSERT INTO main.{table} SELECT * FROM rebuild.{table}")  # noqa: S608
        keep_parked_history(live.execute, live="main", shadow="rebuild")
        live.execute("COMMIT")
        waited = time.monotonic() - locked
        live.execute("DETACH DATABASE rebuild")
    finally:
        live.close()
    drop_shadow()
    return waited


_PARKED = ParkedEvent._meta.db_table


_PARKED_COLUMNS = ", ".join(
    str(field.column) for field in ParkedEvent._meta.concrete_fields if not field.primary_key
)


_OPEN = "status IN ('parked', 'retry')"


def keep_parked_history(execute: Callable[[str], Any], *, live: str, shadow: str) -> None:
    """Keep the live parked events (parked, retried, skipped, resolved: the
    operators' record) across the swap, with the ids they were shown by, and
    add the shadow's own (events its projectors parked) after them.

    An open record (parked, or a retry asked for) stays open, as parked,
    when the rebuilt partition stands halted at the same event: the rebuild
    failed on it too, and the shadow's own record of it is dropped as a
    duplicate. Otherwise it is closed as resolved at the swap: the rebuilt
    partition applied the event (a snapshot already holds its effect), or
    the partition is gone with a change of ``PROJECTION_PARTITIONS``. No
    record says a partition is halted that is not.

    Precondition: under the swap's lock, with the shadow caught up; ``live``
    and ``shadow`` are the schemas (PostgreSQL) or attached databases (SQLite)
    of the two sets of tables, which both read the same SQL.
    """
    halted_at = f"""EXISTS (
        SELECT 1 FROM {shadow}.{Checkpoint._meta.db_table} AS checkpoint
        WHERE checkpoint.projector = {_PARKED}.projector
          AND checkpoint.partition = {_PARKED}.partition
          AND checkpoint.halted_at_position = {_PARKED}.position)"""  # noqa: S608
    execute(
        f"""INSERT INTO {live}.{_PARKED} ({_PARKED_COLUMNS})
            SELECT {_PARKED_COLUMNS} FROM {shadow}.{_PARKED} AS added
            WHERE NOT (added.{_OPEN} AND EXISTS (
                SELECT 1 FROM {live}.{_PARKED} AS kept
                WHERE kept.{_OPEN} AND kept.projector = added.projector
                  AND kept.partition = added.partition AND kept.position = added.position))
            ORDER BY added.id"""  # noqa: S608 (model metadata only)
    )
    execute(f"UPDATE {live}.{_PARKED} SET status = 'parked' WHERE {_OPEN} AND {halted_at}")  # noqa: S608
    execute(
        f"""UPDATE {live}.{_PARKED} SET status = 'resolved', resolved_at = CURRENT_TIMESTAMP
            WHERE {_OPEN} AND NOT {halted_at}"""  # noqa: S608 (model metadata only)
    )
