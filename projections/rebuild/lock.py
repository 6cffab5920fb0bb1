"""One rebuild at a time: a lock that dies with the process that holds it."""

import contextlib
import fcntl
import os
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.db import connections
from django.utils import timezone

from eventstore.databases import READ_DB
from projections.models import (
    RebuildRun,
)
from projections.rebuild.shadow import (
    is_postgres,
    shadow_file,
)

REBUILD_LOCK_KEY = zlib.crc32(b"storefront-rebuild") & 0x7FFFFFFF


class RebuildRunning(Exception):
    """Another rebuild holds the rebuild lock; nothing was touched."""


def _lock_file() -> Path:
    return Path(f"{shadow_file()}.lock")


@contextlib.contextmanager
def rebuild_lock() -> Iterator[None]:
    """Hold the rebuild lock for the block, or raise ``RebuildRunning``
    naming the rebuild that holds it.

    The lock dies with its process, so a rebuild killed even by SIGKILL
    never blocks the next one. On PostgreSQL it is a session advisory lock
    on the live read database, on a connection of its own: this process's
    ``read`` connection is reopened on the shadow meanwhile, and one from
    the pool would keep the lock after going back to it. The connection's
    application name says whose lock it is. On SQLite it is ``flock`` on a
    file beside the shadow file, which says the same.
    """
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    if is_postgres():
        with _advisory_rebuild_lock(holder):
            yield
        return
    with _locked_file(holder):
        yield


@contextlib.contextmanager
def _advisory_rebuild_lock(holder: str) -> Iterator[None]:
    import psycopg

    params = connections[READ_DB].get_connection_params()
    params["application_name"] = f"rebuild_projections {holder}"[:63]
    with psycopg.connect(**params, autocommit=True) as lock:
        taken = lock.execute("SELECT pg_try_advisory_lock(%s, 0)", [REBUILD_LOCK_KEY]).fetchone()
        if not taken or not taken[0]:
            raise RebuildRunning(_refusal(lock_holder()))
        try:
            yield
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s, 0)", [REBUILD_LOCK_KEY])


@contextlib.contextmanager
def _locked_file(holder: str) -> Iterator[None]:
    with _lock_file().open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildRunning(_refusal(_described(lock))) from None
        _describe(lock, f"{holder}, since {timezone.now():%Y-%m-%d %H:%M:%S %Z}")
        try:
            yield
        finally:
            _describe(lock, "")


def _describe(lock: IO[str], text: str) -> None:
    lock.truncate(0)
    lock.write(text)
    lock.flush()


def _described(lock: IO[str]) -> str | None:
    lock.seek(0)
    return lock.read().strip() or None


def lock_holder() -> str | None:
    """Who holds the rebuild lock, as it described itself: its pid, host and
    since when; None when nobody does (on SQLite: nobody said so, as a
    holder killed meanwhile leaves its words behind)."""
    if not is_postgres():
        if not _lock_file().exists():
            return None
        with _lock_file().open() as lock:
            return _described(lock)
    with connections[READ_DB].cursor() as cursor:
        cursor.execute(
            """SELECT activity.application_name, activity.backend_start
               FROM pg_locks AS lock JOIN pg_stat_activity AS activity USING (pid)
               WHERE lock.locktype = 'advisory' AND lock.granted
                 AND lock.classid::bigint = %s AND lock.objid = 0 AND lock.objsubid = 2
                 AND lock.database = (
                     SELECT oid FROM pg_database WHERE datname = current_database())""",
            [REBUILD_LOCK_KEY],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    name, since = row
    who = (name or "").removeprefix("rebuild_projections ") or "a session this role cannot see"
    return f"{who}, since {since:%Y-%m-%d %H:%M:%S %Z}" if since else who


def _refusal(holder: str | None) -> str:
    run = RebuildRun.objects.filter(finished_at__isnull=True).order_by("-pk").first()
    what = f"rebuild #{run.pk} ({run.mode}, {run.get_phase_display().lower()})" if run else ""
    who = f"{what} by {holder}" if what and holder else what or holder or "holder unknown"
    return (
        f"Another rebuild_projections is running: {who}. Wait for it to finish; "
        "a rebuild that dies or is killed releases its lock."
    )
