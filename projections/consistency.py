"""Read your own writes: wait until a projector has applied a log position.

A command answers with the log position of its last event as a consistency
token. A query that carries it waits, for a bounded time, until every
partition of the projector has checkpointed at or past that position.

On PostgreSQL the projectors ``NOTIFY storefront_checkpoints`` on the read
database when a checkpoint commits, so a waiter sleeps in ``LISTEN`` and wakes
only to re-check. On SQLite, which has no notifications, it polls with a
back-off from 5 ms to 100 ms.
"""

import logging
import math
import time
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import sql

from projections.engine import CHECKPOINTS_CHANNEL
from projections.eventlog import START, LogPosition
from projections.models import Checkpoint
from projections.pg import connection_params

logger = logging.getLogger(__name__)

READ_DB = "read"
PRODUCTS = "products"
SELLERS = "sellers"
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.1

# Partitions at or past the token; an absent row is a partition at (0, 0).
_APPLIED_SQL = f"""
    SELECT count(*) FROM {Checkpoint._meta.db_table}
    WHERE projector = %s AND partition < %s
      AND (transaction_id > %s OR (transaction_id = %s AND position >= %s))
"""  # noqa: S608 - the table name is ours, the values are parameters


def partition_count(projector: str) -> int:
    return settings.PROJECTION_PARTITIONS if projector == PRODUCTS else 1


def _applied(cursor: Any, token: LogPosition, projector: str) -> bool:
    partitions = partition_count(projector)
    cursor.execute(
        _APPLIED_SQL,
        [projector, partitions, token.transaction_id, token.transaction_id, token.position],
    )
    return int(cursor.fetchone()[0]) >= partitions


def is_applied(token: LogPosition, projector: str = PRODUCTS) -> bool:
    """Whether every partition of ``projector`` has applied the event at ``token``."""
    if token <= START:
        return True
    with connections[READ_DB].cursor() as cursor:
        return _applied(cursor, token, projector)


def wait_for(token: LogPosition, projector: str = PRODUCTS, timeout: float | None = None) -> bool:
    """Block until ``projector`` has applied ``token``, for at most ``timeout``
    seconds (``settings.CONSISTENCY_WAIT_SECONDS`` by default).

    Returns whether it was applied. Costs one query when it already is.
    """
    if timeout is None:
        timeout = settings.CONSISTENCY_WAIT_SECONDS
    deadline = time.monotonic() + timeout
    if is_applied(token, projector):
        return True
    if timeout <= 0:
        return False
    if connections[READ_DB].vendor == "postgresql":
        try:
            return _wait_listening(token, projector, deadline)
        except psycopg.Error:
            logger.warning("LISTEN failed; polling the checkpoints instead", exc_info=True)
    return _wait_polling(token, projector, deadline)


def _listener_params() -> dict[str, Any]:
    return connection_params(READ_DB)


def _wait_listening(token: LogPosition, projector: str, deadline: float) -> bool:
    """Wait on a connection of its own that LISTENs for checkpoint commits.

    The connection lives only for the wait: a listener nobody reads would
    hold back PostgreSQL's notification queue.
    """
    remaining = deadline - time.monotonic()
    connect_timeout = max(2, math.ceil(remaining))
    params = _listener_params()
    params.setdefault("connect_timeout", connect_timeout)  # the URL's, if it has one
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHECKPOINTS_CHANNEL)))
        while True:
            # Checked after LISTEN, so a commit before it is seen here and
            # one after it wakes the loop.
            if _applied(listener.cursor(), token, projector):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for _ in listener.notifies(timeout=remaining, stop_after=1):
                pass


def _wait_polling(token: LogPosition, projector: str, deadline: float) -> bool:
    pause = POLL_FIRST_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, POLL_MAX_SECONDS)
        if is_applied(token, projector):
            return True
