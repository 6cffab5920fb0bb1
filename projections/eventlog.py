"""Reading the event log without ever skipping an event.

Positions come from a sequence, so on PostgreSQL a transaction can take a
lower position and commit after one with a higher position. A reader that
went by position alone would pass the late one and never see it. So readers
go in ``(transaction_id, position)`` order and only read events whose
transaction is below the horizon: the oldest transaction still running in the
reader's snapshot (``pg_snapshot_xmin(pg_current_snapshot())``). Everything
below it has committed or rolled back, so nothing can appear behind the
checkpoint later.

Transaction ids are shared by every database of a PostgreSQL server, so a
long transaction in another database (the read database's projector batches,
another application) would hold that horizon back for no reason. The horizon
therefore leaves out the snapshot's running transactions that
``pg_stat_activity`` shows in another database; a transaction it cannot place
(already finished, or not visible to this role) still counts, so the horizon
can only err on the side of waiting.

On SQLite writers are serialized (``IMMEDIATE`` transactions), every
transaction id is 0 and position order is commit order.
"""

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from django.db import connections
from django.utils.dateparse import parse_datetime

from projections.models import Event

WRITE_DB = "default"


@dataclasses.dataclass(frozen=True, order=True)
class LogPosition:
    """A point in the log, ordered as readers go."""

    transaction_id: int = 0
    position: int = 0

    def token(self) -> str:
        return f"{self.transaction_id}-{self.position}"

    @classmethod
    def from_token(cls, token: str) -> "LogPosition":
        """Parse a consistency token; raises ValueError when it is not one."""
        left, sep, right = token.strip().partition("-")
        if not sep or not left.isdigit() or not right.isdigit() or len(token) > 45:
            raise ValueError("not a consistency token")
        return cls(int(left), int(right))


START = LogPosition()


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    position: int
    transaction_id: int
    stream_type: str
    stream_id: int
    event_type: str
    version: int
    payload: dict[str, Any]
    occurred_at: datetime

    @property
    def log_position(self) -> LogPosition:
        return LogPosition(self.transaction_id, self.position)


_COLUMNS = "position, {txid}, stream_type, stream_id, event_type, version, payload, occurred_at"

# The oldest transaction of this database still running in the statement's
# snapshot, or the snapshot's xmax when there is none (see the module docstring).
HORIZON = """(
    SELECT coalesce(min(running), pg_snapshot_xmax(pg_current_snapshot()))
    FROM pg_snapshot_xip(pg_current_snapshot()) AS running
    WHERE mod(running::text::bigint, 4294967296) NOT IN (
        SELECT backend_xid::text::bigint FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
    )
)"""

# Constant SQL: the only interpolation is the model's own table name. It orders
# by the table's transaction_id, which the (transaction_id, position) index
# serves; a bare name would be the bigint output column, and sorting by that
# reads and sorts every event after the position.
_POSTGRES_READ = f"""
    SELECT {_COLUMNS.format(txid="transaction_id::text::bigint")}
    FROM {Event._meta.db_table}
    WHERE (transaction_id, position) > (%s::text::xid8, %s)
      AND transaction_id < {HORIZON}
      {{skip}}
    ORDER BY {Event._meta.db_table}.transaction_id, position
    LIMIT %s
"""  # noqa: S608
_SKIP_SNAPSHOT = "AND NOT pg_visible_in_snapshot(transaction_id, %s::pg_snapshot)"

_SQLITE_READ = f"""
    SELECT {_COLUMNS.format(txid="transaction_id")}
    FROM {Event._meta.db_table}
    WHERE position > %s
    ORDER BY position
    LIMIT %s
"""  # noqa: S608


def _decode(row: tuple[Any, ...]) -> StoredEvent:
    position, txid, stream_type, stream_id, event_type, version, payload, occurred_at = row
    if isinstance(payload, str):
        payload = orjson.loads(payload)
    if isinstance(occurred_at, str):
        occurred_at = parse_datetime(occurred_at)
    return StoredEvent(
        position=position,
        transaction_id=int(txid),
        stream_type=stream_type,
        stream_id=stream_id,
        event_type=event_type,
        version=version,
        payload=payload,
        occurred_at=occurred_at,
    )


def _load_moments_in_c(cursor: Any) -> None:
    """Read ``occurred_at`` with psycopg's own loader rather than Django's,
    which wraps it in Python to set the time zone: the session's is UTC
    already (Django sets it), and a replay reads millions of events."""
    oid, loader = _c_moment_loader()
    if loader is not None:
        cursor.adapters.register_loader(oid, loader)


@cache
def _c_moment_loader() -> tuple[int, Any]:
    from psycopg import adapters, postgres
    from psycopg.pq import Format

    oid = postgres.types["timestamptz"].oid
    return oid, adapters.get_loader(oid, Format.TEXT)


def read_events(after: LogPosition, limit: int, *, skip_snapshot: str = "") -> list[StoredEvent]:
    """Up to ``limit`` committed events after ``after``, in reading order.

    ``skip_snapshot`` (PostgreSQL) leaves out the events of transactions
    visible in that snapshot: a rebuild's rows already contain them.
    The connection must not be inside a transaction that wrote: its own
    transaction id would hold the horizon back.
    """
    connection = connections[WRITE_DB]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _load_moments_in_c(cursor.cursor)
            params: list[Any] = [str(after.transaction_id), after.position]
            if skip_snapshot:
                params.append(skip_snapshot)
            sql = _POSTGRES_READ.format(skip=_SKIP_SNAPSHOT if skip_snapshot else "")
            cursor.execute(sql, [*params, limit])
        else:
            cursor.execute(_SQLITE_READ, [after.position, limit])
        rows = cursor.fetchall()
    return [_decode(row) for row in rows]


_POSTGRES_STREAMS = f"""
    SELECT {_COLUMNS.format(txid="transaction_id::text::bigint")}
    FROM {Event._meta.db_table}
    WHERE stream_type = %s AND stream_id = ANY(%s)
      AND (transaction_id, position) <= (%s::text::xid8, %s)
    ORDER BY {Event._meta.db_table}.transaction_id, position
"""  # noqa: S608


def stream_events(
    stream_type: str, stream_ids: Sequence[int], through: LogPosition
) -> list[StoredEvent]:
    """The events of the given streams up to ``through`` included, in reading order.

    A projector that has applied the log up to ``through`` gets exactly the
    events it has seen of those streams, none it has not: what it needs to
    fold a stream's state as of its checkpoint (by the ``event_stream`` index).
    """
    if not stream_ids:
        return []
    connection = connections[WRITE_DB]
    ids = list(stream_ids)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _load_moments_in_c(cursor.cursor)
            params: list[Any] = [stream_type, ids, str(through.transaction_id), through.position]
            cursor.execute(_POSTGRES_STREAMS, params)
        else:
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(
                f"""SELECT {_COLUMNS.format(txid="transaction_id")}
                    FROM {Event._meta.db_table}
                    WHERE stream_type = %s AND stream_id IN ({marks}) AND position <= %s
                    ORDER BY position""",  # noqa: S608 (the model's own table; values are parameters)
                [stream_type, *ids, through.position],
            )
        rows = cursor.fetchall()
    return [_decode(row) for row in rows]


def head() -> LogPosition:
    """The last event a reader could see now (the log's readable end)."""
    connection = connections[WRITE_DB]
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The table's column, by the index: a bare name is the output column
            # (a bigint), and sorting by it reads and sorts the whole log.
            cursor.execute(
                f"""SELECT transaction_id::text::bigint, position FROM {table}
                    WHERE transaction_id < {HORIZON}
                    ORDER BY {table}.transaction_id DESC, position DESC LIMIT 1"""  # noqa: S608
            )
        else:
            cursor.execute(f"SELECT 0, position FROM {table} ORDER BY position DESC LIMIT 1")  # noqa: S608
        row = cursor.fetchone()
    return LogPosition(int(row[0]), int(row[1])) if row else START


def count_after(after: LogPosition) -> int:
    """How many events a reader at ``after`` has not applied yet (committed or not)."""
    connection = connections[WRITE_DB]
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""SELECT count(*) FROM {table}
                    WHERE (transaction_id, position) > (%s::text::xid8, %s)""",  # noqa: S608
                [str(after.transaction_id), after.position],
            )
        else:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE position > %s", [after.position])  # noqa: S608
        return int(cursor.fetchone()[0])


def oldest_after(after: LogPosition) -> datetime | None:
    """When the oldest event not yet applied at ``after`` occurred."""
    connection = connections[WRITE_DB]
    table = Event._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""SELECT min(occurred_at) FROM {table}
                    WHERE (transaction_id, position) > (%s::text::xid8, %s)""",  # noqa: S608
                [str(after.transaction_id), after.position],
            )
        else:
            cursor.execute(
                f"SELECT min(occurred_at) FROM {table} WHERE position > %s",  # noqa: S608
                [after.position],
            )
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = parse_datetime(value)
    return value
