"""Reading the event log without ever skipping an event.

Positions come from a sequence, so on PostgreSQL a transaction can take a
lower position and commit after one with a higher position. A reader that
went by position alone would pass the late one and never see it. So readers
go in ``(transaction_id, position)`` order and only read events whose
transaction is below the horizon: the oldest transaction that was running in
the reader's snapshot and can still record an event.

Which transactions can still record an event: every command's transaction
announces itself as an event writer before its first write, by a shared
advisory lock it holds to its end (``eventstore.recording.announce_event_writer``),
and the event table's trigger refuses events from any other. The horizon is
computed in the statement that reads, in this order:

1. the statement's snapshot gives the running transactions and the upper
   bound (``pg_current_snapshot()``, taken when the statement starts);
2. then ``pg_locks`` gives the transactions running now that hold an id but
   not the writers' lock (matched by the backend's pid);
3. then the commit log says which of those are still in progress: those are
   bystanders, which can never record an event (announcing after the first
   write is refused), so they do not hold the horizon;
4. the horizon is the oldest transaction of step 1 that is not a bystander,
   else the snapshot's upper bound.

A writer still running holds the horizon; one that finished between steps 1
and 2 holds it too (it was running in the snapshot, so its events are not
visible to this read; the next read passes it); one that announced but got its
id after the snapshot has an id above the bound. A writer caught in the middle
of its commit holds it as well. PostgreSQL ends the transaction in its process
array (clearing the backend's virtual transaction id) before it gives back
the locks, and ``pg_locks`` reads that virtual id afresh for each row, so one
look could show the writer's id under one virtual transaction and its
writer's lock under another: matched by virtual transaction, it was taken
for a bystander and passed while the reader's snapshot did not show its
events yet (a busy log lost about one event in 5,000 that way:
``test_a_reader_misses_no_event_of_writers_that_commit_while_it_reads``).
Locks are matched by pid, which a commit does not change, and step 3 holds
on its own: by the time a commit clears the virtual id, the commit log no
longer says the transaction is in progress.
Everything below the horizon that the snapshot does not show as running has
committed or rolled back, so nothing can appear behind the checkpoint later.
A long transaction that never announced (a batch job, a session idle in
transaction, another database on the same server, the read side's own
batches) never holds projection back; a writer that stays open too long is
reported (``stalled_writers``).

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

from eventstore.databases import WRITE_DB
from eventstore.models import Event

# The shared advisory lock (two int4 keys) that every transaction recording
# events holds from its first statement to its end, and the setting that says
# so to the event table's guard (``eventstore.recording.announce_event_writer``).
EVENT_WRITER_LOCK = (1398036052, 1)
EVENT_WRITER_SETTING = "storefront.event_writer"


@dataclasses.dataclass(frozen=True, order=True)
class LogPosition:
    """A point in the log, ordered as readers go."""

    transaction_id: int = 0
    position: int = 0

    def token(self) -> str:
        return f"{self.transaction_id}-{self.position}"


START = LogPosition()

# Events about one product name it under this payload key. Partitioned
# projectors divide the log by it (``KeyedSlice``), and a consistency token
# names the keys of its events (at most ``MAX_TOKEN_KEYS``), so a reader
# waits only for the partitions that own them.
PARTITION_KEY = "product_id"
# Events that make their product's row show other products name those under
# this key; the row is written from what those products' owners know, so a
# token names them too, and a reader waits for their owners as well.
SHOWN_KEYS = "related_ids"
MAX_TOKEN_KEYS = 4


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

# The oldest transaction of the statement's snapshot that is not known to be
# unable to write events (see the module docstring); the snapshot's upper
# bound when there is none. ``pg_locks`` is read once (a materialized CTE) so
# a transaction's id and its writer's lock come from the same look, matched by
# the backend's pid (its virtual transaction id is read live for each row, and
# a commit clears it before the locks go); each running transaction's status
# is read after that look (``running`` is materialized from it, and the status
# is asked of its rows). A prepared transaction's locks have no pid: one that
# holds the writers' lock puts a NULL among the writers, and then every
# running transaction holds the horizon (the safe side).
_LOCK_KEYS = {"classid": EVENT_WRITER_LOCK[0], "objid": EVENT_WRITER_LOCK[1]}
HORIZON = """(
    WITH locks AS MATERIALIZED (
        SELECT locktype, database, classid, objid, objsubid, transactionid, pid, mode, granted
        FROM pg_locks
    ), writers AS (
        SELECT pid FROM locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND classid = {classid} AND objid = {objid}
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ), unannounced AS (
        SELECT transactionid::text::bigint AS xid FROM locks
        WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted
          AND pid NOT IN (SELECT pid FROM writers)
    ), running AS MATERIALIZED (
        SELECT running,
               mod(running::text::bigint, 4294967296) IN (SELECT xid FROM unannounced)
                   AS unannounced
        FROM pg_snapshot_xip(pg_current_snapshot()) AS running
    )
    SELECT coalesce(min(running), pg_snapshot_xmax(pg_current_snapshot()))
    FROM running
    WHERE NOT unannounced OR pg_xact_status(running) IS DISTINCT FROM 'in progress'
)""".format(**_LOCK_KEYS)  # noqa: S608 (two integer constants)

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


@dataclasses.dataclass(frozen=True)
class KeyedSlice:
    """The events whose payload's ``key`` (an integer) is ``remainder``
    modulo ``modulus``, and every event without such a key: one partition's
    share of the log when partitions divide it by a key."""

    key: str
    modulus: int
    remainder: int

    def __post_init__(self) -> None:
        if not self.key.isidentifier():
            raise ValueError(f"not a payload key: {self.key!r}")
        if not 0 <= self.remainder < self.modulus:
            raise ValueError(f"no remainder {self.remainder} modulo {self.modulus}")

    def holds(self, payload: dict[str, Any]) -> bool:
        value = payload.get(self.key)
        if type(value) is not int:
            return True
        return value % self.modulus == self.remainder


# The slice's events among the next ``scan`` events of the log after the
# position, at most ``limit`` of them, and a last row that marks where the
# scan ended: every event of the log up to it that the slice does not hold
# was looked at and passed. The scanned rows are kept in memory (a
# materialized CTE); only the slice's payloads are sent.
_PG_MINE = """CASE WHEN jsonb_typeof(payload -> '{key}') = 'number'
    THEN mod((payload ->> '{key}')::numeric, %(modulus)s) = %(remainder)s ELSE true END"""
_SQLITE_MINE = """CASE WHEN json_type(payload, '$.{key}') = 'integer'
    THEN json_extract(payload, '$.{key}') %% %(modulus)s = %(remainder)s ELSE 1 END"""
_KEYED_READ = """
    WITH scanned AS MATERIALIZED (
        SELECT {columns}, {mine} AS mine
        FROM {table}
        WHERE {after} {horizon} {skip}
        ORDER BY {order}
        LIMIT %(scan)s
    )
    SELECT * FROM (
        SELECT {outer}, 0 AS marker, 0 AS scanned FROM scanned WHERE mine
        ORDER BY {scan_order} LIMIT %(limit)s
    ) AS slice
    UNION ALL
    SELECT * FROM (
        SELECT position, txid, CAST(NULL AS text), CAST(NULL AS bigint), CAST(NULL AS text),
               CAST(NULL AS smallint), CAST(NULL AS {json}), CAST(NULL AS {moment}), 1,
               (SELECT count(*) FROM scanned)
        FROM scanned ORDER BY {scan_order_desc} LIMIT 1
    ) AS last_scanned
"""
_OUTER = "position, txid, stream_type, stream_id, event_type, version, payload, occurred_at"


@cache
def _keyed_sql(vendor: str, key: str, skip: bool) -> str:
    table = Event._meta.db_table
    if vendor == "postgresql":
        return _KEYED_READ.format(
            columns=_COLUMNS.format(txid="transaction_id::text::bigint AS txid"),
            mine=_PG_MINE.format(key=key),
            table=table,
            after="(transaction_id, position) > (%(txid)s::text::xid8, %(position)s)",
            horizon=f"AND transaction_id < {HORIZON}",
            skip="AND NOT pg_visible_in_snapshot(transaction_id, %(skip)s::pg_snapshot)"
            if skip
            else "",
            order=f"{table}.transaction_id, position",
            outer=_OUTER,
            scan_order="txid, position",
            scan_order_desc="txid DESC, position DESC",
            json="jsonb",
            moment="timestamptz",
        )
    return _KEYED_READ.format(
        columns=_COLUMNS.format(txid="transaction_id AS txid"),
        mine=_SQLITE_MINE.format(key=key),
        table=table,
        after="position > %(position)s",
        horizon="",
        skip="",
        order="position",
        outer=_OUTER,
        scan_order="position",
        scan_order_desc="position DESC",
        json="text",
        moment="text",
    )


def read_slice(
    after: LogPosition,
    limit: int,
    where: KeyedSlice,
    *,
    scan: int,
    skip_snapshot: str = "",
) -> tuple[list[StoredEvent], LogPosition, bool]:
    """The slice's next events after ``after`` (at most ``limit``, among the
    next ``scan`` committed events), the position up to which every event
    was looked at (the last event returned when ``limit`` were, else the
    last event scanned; ``after`` when the log has nothing new), and whether
    the log may hold more after it (a full batch or a full scan).

    A reader of a slice can move its checkpoint to that position: the events
    of other slices up to it are not its to apply. The payload test is in
    SQL; ``KeyedSlice.holds`` is the same test in Python.
    """
    connection = connections[WRITE_DB]
    sql = _keyed_sql(connection.vendor, where.key, bool(skip_snapshot))
    params: dict[str, int | str] = {
        "txid": str(after.transaction_id),
        "position": after.position,
        "modulus": where.modulus,
        "remainder": where.remainder,
        "skip": skip_snapshot,
        "scan": scan,
        "limit": limit,
    }
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _load_moments_in_c(cursor.cursor)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    events = [_decode(row[:-2]) for row in rows if not row[-2]]
    events.sort(key=_reading_order)
    marks = [(LogPosition(int(row[1]), int(row[0])), int(row[-1])) for row in rows if row[-2]]
    if len(events) == limit:
        return events, events[-1].log_position, True
    if not marks:
        return events, after, False
    last, scanned = marks[0]
    return events, last, scanned == scan


def _reading_order(event: StoredEvent) -> tuple[int, int]:
    return event.transaction_id, event.position


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


def last_before_snapshot(snapshot: str) -> LogPosition:
    """The last event, in reading order, of the transactions older than every
    one running in ``snapshot`` (PostgreSQL): those have all ended, so every
    event up to it is either in the snapshot or never was."""
    table = Event._meta.db_table
    with connections[WRITE_DB].cursor() as cursor:
        cursor.execute(
            f"""SELECT transaction_id::text::bigint, position FROM {table}
                WHERE transaction_id < pg_snapshot_xmin(%s::pg_snapshot)
                ORDER BY {table}.transaction_id DESC, position DESC LIMIT 1""",  # noqa: S608
            [snapshot],
        )
        row = cursor.fetchone()
    return LogPosition(int(row[0]), int(row[1])) if row else START


def tail() -> LogPosition:
    """The log's last event in reading order, committed or not yet readable
    (a command that changed nothing answers with it)."""
    last = (
        Event.objects.using(WRITE_DB)
        .order_by("-transaction_id", "-position")
        .values_list("transaction_id", "position")
        .first()
    )
    return LogPosition(int(last[0]), int(last[1])) if last else START


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


@dataclasses.dataclass(frozen=True)
class StalledWriter:
    """An event writer's transaction open long enough to hold readers back."""

    pid: int
    seconds: float
    state: str
    query: str

    def describe(self) -> str:
        query = " ".join(self.query.split())[:200]
        return f"pid {self.pid} ({self.state or 'unknown'} for {self.seconds:.0f} s: {query!r})"


_STALLED_WRITERS = """
    SELECT a.pid, extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
           coalesce(a.state, ''), coalesce(a.query, '')
    FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = %s AND l.objid = %s
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND a.backend_xid IS NOT NULL
      AND a.xact_start < clock_timestamp() - make_interval(secs => %s)
    ORDER BY a.xact_start
    LIMIT 10
"""


def stalled_writers(older_than: float) -> list[StalledWriter]:
    """Event writers whose transaction holds the log's horizon and has been
    open for more than ``older_than`` seconds, oldest first (PostgreSQL)."""
    connection = connections[WRITE_DB]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(_STALLED_WRITERS, [*EVENT_WRITER_LOCK, older_than])
        return [StalledWriter(*row) for row in cursor.fetchall()]
