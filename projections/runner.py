"""The long-running projector loop behind ``manage.py run_projectors``.

On PostgreSQL it sleeps on ``LISTEN storefront_events`` (the write side
notifies on commit), so new events are projected within milliseconds without
polling; a timeout still sweeps every second in case a notification was
missed. Each notification names its event's key (the product): a process
wakes at once for a commit one of its partitions owns (or one that names no
key), and only ``PASS_OVER_SECONDS`` later for the others', which its
partitions then pass over in one go. On SQLite it polls, backing off from
20 ms to 1 s while idle.

A database that cannot be reached or refuses for a moment (the read database
down, a connection killed, a deadlock, a lock or idle-transaction timeout:
``engine.is_infrastructure_error``) does not end the loop: the pass is
abandoned, every connection of the loop is closed, and the loop tries again
after a back-off from 0.5 s to 5 s, logging each failed attempt once. Any
other error is a bug and ends it. Nothing is lost meanwhile: the checkpoints
did not move, so the next pass starts where the last good batch ended.
"""

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from django.db import connections

from eventstore.databases import WRITE_DB
from eventstore.listen import listening_connection
from eventstore.recording import EVENTS_CHANNEL, notified_key
from projections.engine import (
    Projection,
    SharedReads,
    catch_up,
    default_owner,
    is_infrastructure_error,
)
from projections.models import Checkpoint
from projections.ownership import Claims
from projections.registry import checkpoint_positions

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
MIN_POLL_SECONDS = 0.02
FIRST_OUTAGE_WAIT_SECONDS = 0.5
MAX_OUTAGE_WAIT_SECONDS = 5.0
# A partition's turn in a pass: batches for about this long, then the next one.
TURN_SECONDS = 0.5
# A commit of another process's partitions only: this process's partitions
# pass over it (and any more by then) this long after.
PASS_OVER_SECONDS = 0.1


def _close_connections() -> None:
    """Drop this thread's database connections; the next query reconnects."""
    for connection in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):
            connection.close()


def _return_pooled_connections() -> None:
    """Give this thread's pooled connections back (``DATABASE_POOL``): a thread
    holds them only while it projects, so threads beyond the pool's size take
    turns instead of some waiting for ever. Persistent connections stay."""
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is not None:
            connection.close()


class ProjectorLoop:
    def __init__(
        self,
        projections: Sequence[type[Projection]],
        *,
        batch_size: int | None = None,
        owner: str | None = None,
        threads: int = 1,
    ) -> None:
        self.projections = projections
        self.threads = threads
        self.batch_size = batch_size
        self.owner = owner or default_owner()
        self.stopping = threading.Event()
        self._listener: Any = None
        self._pool: ThreadPoolExecutor | None = None
        # Each partition's checkpoint as our last batch left it, and the
        # projection instance that keeps its rows between batches (engine.catch_up).
        self._known: dict[tuple[str, int], Checkpoint] = {}
        self._kept: dict[tuple[str, int], Projection] = {}
        # Whether a partition of the last pass waits for another one to go on,
        # or had more to do when its turn ended.
        self._waiting = False
        # The partitions this process works on, when it runs for good beside
        # others (``projections.ownership``); None: every partition.
        self._claims: Claims | None = None
        # Those of the last pass: a commit that concerns one wakes it at once.
        self._mine: list[tuple[type[Projection], int]] = []

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("Signal %s: stopping after the current batch.", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run_once(self) -> int:
        """One pass over every partition, on ``threads`` threads: a batch mostly
        waits on the databases, so with more than one the partitions overlap."""
        work = [
            (projection, partition)
            for projection in self.projections
            for partition in range(projection.recent_partition_count())
        ]
        # What it keeps of partitions a resize merged away goes with them.
        current = {(p.name, partition) for p, partition in work}
        for gone in (self._kept.keys() | self._known.keys()) - current:
            self._kept.pop(gone, None)
            self._known.pop(gone, None)
        if self._claims is not None:
            self._claims.follow([(p.name, partition) for p, partition in work])
            owned = set(self._claims.owned())
            work = [(p, partition) for p, partition in work if (p.name, partition) in owned]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="projector")
        reads = SharedReads()
        self._waiting = False
        self._unfinished: set[tuple[str, int]] = set()
        self._mine = work
        futures = [self._pool.submit(self._catch_up, *item, reads) for item in work]
        return sum(future.result() for future in futures)

    def run_until_caught_up(self) -> int:
        """Passes until none has a partition with more to do (``run_projectors
        --once``): a turn may end before its partition's work, and one pass can
        leave a list that shows a product whose partition came later in it."""
        applied = 0
        while True:
            before = checkpoint_positions(self.projections)
            applied += self.run_once()
            after = checkpoint_positions(self.projections)
            # None of those with more to do moved: they wait for an owner halted
            # behind a parked event (new commands may move the others for ever).
            if not any(after.get(key) != before.get(key) for key in self._unfinished):
                return applied

    def _note_waiting(self, projection: type[Projection], partition: int) -> None:
        self._waiting = True
        self._unfinished.add((projection.name, partition))

    def _catch_up(self, projection: type[Projection], partition: int, reads: SharedReads) -> int:
        if self.stopping.is_set():
            return 0
        try:
            return catch_up(
                projection,
                partition,
                batch_size=self.batch_size,
                owner=self.owner,
                known=self._known,
                reads=reads,
                projection=self._kept_instance(projection, partition),
                on_waiting=lambda: self._note_waiting(projection, partition),
                # Short turns: a pass ends soon, so the claims are rebalanced
                # and a long catch-up does not keep other partitions waiting.
                until=time.monotonic() + TURN_SECONDS,
            )
        except Exception as error:
            if is_infrastructure_error(error):
                _close_connections()  # the pool thread's own: it keeps them between passes
            raise
        finally:
            _return_pooled_connections()

    def _kept_instance(self, projection: type[Projection], partition: int) -> Projection:
        """The partition's instance, kept from pass to pass (a batch gives it
        the count its checkpoint says, ``run_batch``)."""
        kept = self._kept.get((projection.name, partition))
        if kept is None:
            count = projection.recent_partition_count()
            kept = self._kept[(projection.name, partition)] = projection(partition, count)
        return kept

    def run_forever(self) -> None:
        idle_wait = waiting_wait = MIN_POLL_SECONDS
        outage_wait = FIRST_OUTAGE_WAIT_SECONDS
        outage_since: float | None = None
        try:
            while not self.stopping.is_set():
                try:
                    if self._claims is None and Claims.wanted():
                        # Its partitions follow a resize: ``run_once`` sets them.
                        self._claims = Claims(
                            [
                                (projection.name, partition)
                                for projection in self.projections
                                for partition in range(projection.recent_partition_count())
                            ]
                        )
                    if self._listener is None:
                        self._listen()
                    applied = self.run_once()
                    if self._waiting:
                        # Soon again, but not in a spin: an owner halted behind
                        # a parked event keeps a list waiting until someone acts.
                        waiting_wait = MIN_POLL_SECONDS if applied else waiting_wait * 2
                        self.stopping.wait(min(waiting_wait, SWEEP_SECONDS))
                    elif not applied or self._listener is not None:
                        # Every partition read the log to its end, and a
                        # commit since then has notified: nothing to look for
                        # until a notification comes (or the sweep's second).
                        self._idle(idle_wait)
                except Exception as error:
                    if not is_infrastructure_error(error):
                        raise  # a bug: it ends the loop
                    if outage_since is None:
                        outage_since = time.monotonic()
                    logger.warning(
                        "A database is unreachable or refused for a moment (%s); "
                        "trying again in %.1f s.",
                        _one_line(error),
                        outage_wait,
                    )
                    self._unlisten()
                    _close_connections()  # the claims keep theirs (``Claims.owned``)
                    self.stopping.wait(outage_wait)
                    outage_wait = min(outage_wait * 2, MAX_OUTAGE_WAIT_SECONDS)
                    continue
                if outage_since is not None:
                    logger.warning(
                        "The databases are reachable again after %.1f s; projecting.",
                        time.monotonic() - outage_since,
                    )
                    outage_since = None
                    outage_wait = FIRST_OUTAGE_WAIT_SECONDS
                idle_wait = min(idle_wait * 2, SWEEP_SECONDS) if not applied else MIN_POLL_SECONDS
        finally:
            self._unlisten()
            self._unclaim()
            if self._pool is not None:
                self._pool.shutdown()

    def _idle(self, poll_wait: float) -> None:
        """Wait for new events: a notification on PostgreSQL, a poll on SQLite."""
        if self._listener is not None:
            self._wait_for_notification(SWEEP_SECONDS)
        else:
            self.stopping.wait(poll_wait)

    def _listen(self) -> None:
        if connections[WRITE_DB].vendor != "postgresql":
            return
        self._listener = listening_connection(WRITE_DB, EVENTS_CHANNEL)

    def _wait_for_notification(self, timeout: float) -> None:
        """Until a commit concerns one of this process's partitions (``_concerns``),
        or ``PASS_OVER_SECONDS`` after one that does not (its partitions then
        pass over it, for the readers that wait for every partition), or the
        sweep's ``timeout``."""
        assert self._listener is not None
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            payloads = [
                notify.payload
                for notify in self._listener.notifies(timeout=min(remaining, 0.25), stop_after=1)
            ]
            if not payloads:
                continue
            # The ones queued behind it are commits the next pass sees too:
            # one pass for all of them, not one more (empty) pass each.
            payloads += [notify.payload for notify in self._listener.notifies(timeout=0)]
            if any(self._concerns(payload) for payload in payloads):
                return
            deadline = min(deadline, time.monotonic() + PASS_OVER_SECONDS)

    def _concerns(self, payload: str) -> bool:
        """Whether a commit's NOTIFY names a key one of this process's
        partitions owns (``notified_key``; none named: every partition's)."""
        key = notified_key(payload)
        if key is None:
            return True
        return any(
            partition == key % projection.recent_partition_count()
            for projection, partition in self._mine
        )

    def _unclaim(self) -> None:
        if self._claims is not None:
            with contextlib.suppress(Exception):
                self._claims.close()
            self._claims = None

    def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}"
