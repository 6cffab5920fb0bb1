"""Read your own writes: wait until a projector has applied a log position.

A command answers with a consistency token: the log position of its last
event, signed with the server's secret key and the moment it was issued
(``issue_token``), with the keys its events named (the products they are
about). A query that carries one waits, for a bounded time, until the
partitions of the projector that own those keys have checkpointed at or past
that position (an owner writes every row that shows its product, in its own
batch), or every partition for a token without keys (``passed``).

Waiting is a resource a client could try to hoard, so it is bounded:

- only tokens this server issued are read (``read_token``); anything else is
  refused before any wait. A token older than
  ``CONSISTENCY_TOKEN_MAX_AGE_SECONDS`` is checked once and never waited for:
  its write is long applied, or the projector is stuck and waiting would not
  help;
- at most ``CONSISTENCY_MAX_WAITERS`` requests of a process wait at once;
  over that, a query answers at once with what it has (and says it may be
  stale);
- on PostgreSQL one thread per process listens for checkpoint commits on
  the read database (``CheckpointWatch``), with one connection, and keeps
  every partition's checkpoint in memory from the notifications themselves
  (the engine sends each new checkpoint as the payload); waiting requests
  sleep on a condition and hold no connection. On SQLite, which has no
  notifications, a waiter polls with a back-off from 5 ms to 100 ms.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Histogram
from psycopg import sql

from eventstore.databases import READ_DB
from eventstore.eventlog import START, LogPosition
from eventstore.listen import connection_params
from projections.engine import CHECKPOINTS_CHANNEL
from projections.models import Checkpoint

logger = logging.getLogger(__name__)

PRODUCTS = "products"
SELLERS = "sellers"
CONSISTENCY_WAITS = Counter(
    "storefront_consistency_waits",
    "Reads that carried a consistency token, by projector and outcome: applied at once, "
    "applied after a wait, timeout (answered stale), not waited for (an old token, or every "
    "waiting slot of the process taken; answered stale).",
    ["projector", "outcome"],
)
CONSISTENCY_WAIT_SECONDS = Histogram(
    "storefront_consistency_wait_seconds",
    "How long reads with a consistency token waited for the read model.",
    ["projector"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
WAIT_OUTCOMES = ("applied", "applied_after_wait", "timeout", "not_waited")
for _projector in (PRODUCTS, SELLERS):
    for _outcome in WAIT_OUTCOMES:
        CONSISTENCY_WAITS.labels(_projector, _outcome)  # from 0, so the first one counts
    CONSISTENCY_WAIT_SECONDS.labels(_projector)
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.1
# The watch lets go of its connection after this long with nobody waiting.
WATCH_IDLE_SECONDS = 60.0
WATCH_TICK_SECONDS = 0.25
WATCH_APPLICATION_NAME = "storefront-checkpoint-watch"


Keys = frozenset[int] | None


def passed(
    positions: Mapping[int, LogPosition], count: int, token: LogPosition, keys: Keys = None
) -> bool:
    """Whether the partitions a token needs are at or past it: those owning
    its keys (``key % count``; an owner also writes every row that shows its
    product), or every one of the ``count`` when it names none. A partition
    with no position is at the log's start."""
    needed = range(count) if keys is None else {key % count for key in keys}
    return all(positions.get(partition, START) >= token for partition in needed)


_CHECKPOINTS_SQL = f"""
    SELECT partition, transaction_id, position, partitions
    FROM {Checkpoint._meta.db_table}
    WHERE projector = %s
"""  # noqa: S608 - the table name is ours, the values are parameters


def _applied(cursor: Any, token: LogPosition, projector: str, keys: Keys) -> bool:
    """``passed`` over the projector's rows as they are now; their own count
    says how many partitions there are (``Checkpoint.partitions``, which a
    resize changes with the rows, in one transaction). No row: not yet."""
    cursor.execute(_CHECKPOINTS_SQL, [projector])
    rows = cursor.fetchall()
    if not rows:
        return False
    positions = {int(row[0]): LogPosition(int(row[1]), int(row[2])) for row in rows}
    return passed(positions, max(int(row[3]) for row in rows), token, keys)


def is_applied(token: LogPosition, projector: str = PRODUCTS, keys: Keys = None) -> bool:
    """Whether ``projector`` has applied the event at ``token``: the
    partitions owning ``keys``, or every one (``passed``)."""
    if token <= START:
        return True
    with connections[READ_DB].cursor() as cursor:
        return _applied(cursor, token, projector, keys)


class _Waiters:
    """How many requests of this process wait now, at most the setting's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[bool]:
        with self._lock:
            granted = self.count < settings.CONSISTENCY_MAX_WAITERS
            if granted:
                self.count += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self.count -= 1


waiters = _Waiters()


def wait_for(
    token: LogPosition,
    projector: str = PRODUCTS,
    timeout: float | None = None,
    *,
    fresh: bool = True,
    keys: Keys = None,
) -> bool:
    """Block until ``projector`` has applied ``token`` (in the partitions that
    own ``keys``, or in all: ``passed``), for at most ``timeout``
    seconds (``settings.CONSISTENCY_WAIT_SECONDS`` by default).

    Returns whether it was applied. Costs one query when it already is, and
    when it is not but the token is no longer ``fresh`` or every waiting slot
    of the process is taken: then it answers at once.
    """
    if timeout is None:
        timeout = settings.CONSISTENCY_WAIT_SECONDS
    started = time.monotonic()
    deadline = started + timeout
    if is_applied(token, projector, keys):
        CONSISTENCY_WAITS.labels(projector, "applied").inc()
        return True
    if timeout <= 0 or not fresh:
        CONSISTENCY_WAITS.labels(projector, "not_waited").inc()
        return False
    with waiters.slot() as granted:
        if not granted:
            CONSISTENCY_WAITS.labels(projector, "not_waited").inc()
            return False
        if connections[READ_DB].vendor == "postgresql":
            applied = watch.wait(token, projector, deadline, keys)
        else:
            applied = _wait_polling(token, projector, deadline, keys)
    CONSISTENCY_WAITS.labels(projector, "applied_after_wait" if applied else "timeout").inc()
    CONSISTENCY_WAIT_SECONDS.labels(projector).observe(time.monotonic() - started)
    return applied


def _wait_polling(token: LogPosition, projector: str, deadline: float, keys: Keys) -> bool:
    pause = POLL_FIRST_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, POLL_MAX_SECONDS)
        if is_applied(token, projector, keys):
            return True


class CheckpointWatch:
    """This process's one listener for checkpoint commits (PostgreSQL).

    A thread of its own LISTENs on the read database and keeps the position
    of every partition: read once after LISTEN (so a commit before it is not
    missed), then moved by each notification's payload
    (``engine.checkpoint_payload``). Waiters sleep on a condition and check the
    positions in memory. The thread starts with the first waiter and ends
    after ``WATCH_IDLE_SECONDS`` without one. If it cannot listen (the read
    database is down), waiters stop waiting and their queries answer with
    what they have.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        # Each projector's partitions' positions.
        self._positions: dict[str, dict[int, LogPosition]] | None = None
        # Each projector's partitions, as its rows said when last read whole
        # (a resize changes them and tells the watch to read again).
        self._counts: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._failed = False
        self._waiting = 0
        self._last_waiter = time.monotonic()
        self._moves = 0  # positions read or moved so far (``wait_for_move``)

    def wait(self, token: LogPosition, projector: str, deadline: float, keys: Keys = None) -> bool:
        with self._condition:
            self._waiting += 1
            try:
                self._start()
                while True:
                    if self._positions is not None and self._applied(token, projector, keys):
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._failed:
                        return False
                    self._condition.wait(remaining)
            finally:
                self._waiting -= 1
                self._last_waiter = time.monotonic()

    def applied(self, token: LogPosition, projector: str, keys: Keys = None) -> bool:
        """Whether the watch has seen ``token`` applied, without waiting."""
        with self._condition:
            return self._positions is not None and self._applied(token, projector, keys)

    def wait_for_move(self, seen: int, deadline: float) -> int:
        """Sleep until a checkpoint has moved since the watch's count of moves
        was ``seen`` (or until ``deadline``), and return the count now: for
        one caller that follows many tokens at once (``applied`` tells it
        whether each is)."""
        with self._condition:
            self._waiting += 1
            try:
                self._start()
                while self._moves == seen and not self._failed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._condition.wait(remaining)
                return self._moves
            finally:
                self._waiting -= 1
                self._last_waiter = time.monotonic()

    def stop(self, timeout: float = 2.0) -> None:
        """Retire the watch now (its thread ends within a tick): for tests,
        whose databases are emptied under it."""
        with self._condition:
            thread, self._thread = self._thread, None
            self._positions = None
            self._condition.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _applied(self, token: LogPosition, projector: str, keys: Keys) -> bool:
        assert self._positions is not None
        count = self._counts.get(projector)
        if count is None:  # no checkpoint of it seen yet: a batch's payload will say
            return False
        return passed(self._positions.get(projector, {}), count, token, keys)

    def _start(self) -> None:
        """With the condition held: make sure a thread is watching."""
        if self._thread is not None:
            return
        self._failed = False
        self._positions = None
        self._thread = threading.Thread(target=self._run, name="checkpoint-watch", daemon=True)
        self._thread.start()

    def _mine(self) -> bool:
        """With the condition held: whether the calling thread is the watch
        (a retired one may still be finishing)."""
        return self._thread is threading.current_thread()

    def _run(self) -> None:
        try:
            with self._listening() as listener:
                self._read_all(listener)
                while not self._retired():
                    # Taken out of the generator first: it holds the
                    # connection's lock, which ``_read_all`` needs.
                    payloads = [
                        notify.payload
                        for notify in listener.notifies(timeout=WATCH_TICK_SECONDS, stop_after=1)
                    ]
                    for payload in payloads:
                        self._apply(listener, payload)
        except Exception:  # the database, or anything else: waiters must not hang on it
            logger.warning("Cannot listen for checkpoints; queries will not wait.", exc_info=True)
            with self._condition:
                if self._mine():
                    self._failed = True
                    self._condition.notify_all()
        finally:
            with self._condition:
                if self._mine():
                    self._thread = None
                    self._positions = None

    def _retired(self) -> bool:
        """Whether to stop: nobody has waited for a while. The decision and
        the retirement are one step, so a waiter coming now starts a new watch."""
        with self._condition:
            idle = time.monotonic() - self._last_waiter > WATCH_IDLE_SECONDS
            if self._waiting == 0 and idle and self._mine():
                self._thread = None
                self._positions = None
            return not self._mine()

    @contextlib.contextmanager
    def _listening(self) -> Iterator[psycopg.Connection[Any]]:
        params = _listener_params()
        params.setdefault("connect_timeout", 2)  # the URL's, if it has one
        named = params.get("application_name")
        params["application_name"] = (
            f"{named}:{WATCH_APPLICATION_NAME}" if named else WATCH_APPLICATION_NAME
        )
        with psycopg.connect(**params, autocommit=True) as listener:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHECKPOINTS_CHANNEL)))
            yield listener

    def _read_all(self, listener: psycopg.Connection[Any]) -> None:
        rows = listener.execute(
            f"SELECT projector, partition, transaction_id, position, partitions "  # noqa: S608
            f"FROM {Checkpoint._meta.db_table}"
        ).fetchall()
        with self._condition:
            if self._mine():
                positions: dict[str, dict[int, LogPosition]] = {}
                for projector, partition, txid, position, _ in rows:
                    moved = LogPosition(int(txid), int(position))
                    positions.setdefault(projector, {})[int(partition)] = moved
                self._positions = positions
                self._counts = {projector: int(count) for projector, *_, count in rows}
                self._moves += 1
                self._condition.notify_all()

    def _apply(self, listener: psycopg.Connection[Any], payload: str) -> None:
        try:
            # An older release's projector sends no count: the last one read stands.
            projector, partition, txid, position, *count = payload.split(":")
            number, moved = int(partition), LogPosition(int(txid), int(position))
            counted = [int(value) for value in count]
            if len(counted) > 1:
                raise ValueError(payload)
        except ValueError:
            self._read_all(listener)
            return
        with self._condition:
            if self._mine() and self._positions is not None:
                self._positions.setdefault(projector, {})[number] = moved
                if counted:
                    self._counts[projector] = counted[0]
                self._moves += 1
                self._condition.notify_all()


watch = CheckpointWatch()


def _listener_params() -> dict[str, Any]:
    """Every option of the read database's URL (``eventstore.listen``)."""
    return connection_params(READ_DB)
