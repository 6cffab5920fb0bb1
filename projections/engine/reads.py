"""Reading the log for batches: the reads one pass of partitions shares,
and a long replay's read ahead."""

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import connections

from eventstore import eventlog
from eventstore.eventlog import KeyedSlice, LogPosition, StoredEvent
from eventstore.upcasting import upcast

# A read: the events, the position up to which the log was looked at, and
# whether the log may hold more after it.
Read = tuple[list[StoredEvent], LogPosition, bool]
ReadKey = tuple[LogPosition, int, str, KeyedSlice | None]

# A slice's read looks at up to this many events of the log per event it may
# return (times the slices' number), so a partition keeps pace with the log
# even when its own events are few.
MAX_SCAN = 50_000


def read_current(
    start: LogPosition,
    limit: int,
    skip_snapshot: str,
    where: KeyedSlice | None = None,
    *,
    scan: int | None = None,
) -> Read:
    """The log's next events after ``start`` (of the slice ``where``, when
    given), each upcast to its current version once, and how far the log was
    looked at (``eventlog.read_slice``)."""
    if where is None:
        events = eventlog.read_events(start, limit, skip_snapshot=skip_snapshot)
        through = events[-1].log_position if events else start
        more = len(events) == limit
    else:
        if scan is None:
            scan = min(limit * where.modulus, max(MAX_SCAN, limit))
        events, through, more = eventlog.read_slice(
            start, limit, where, scan=scan, skip_snapshot=skip_snapshot
        )
        # The SQL test on the stored payload is a filter only; the payload as
        # upcast decides (an upcaster must not move an event to another slice).
        current = [upcast(event) for event in events]
        return [event for event in current if where.holds(event.payload)], through, more
    return [upcast(event) for event in events], through, more


class SharedReads:
    """The reads of the log made during one pass over the partitions.

    Partitions that stand at the same place and read the same part of the log
    (the whole of it, or the same slice) ask for the same events. The log
    below its horizon only grows at the end, so events read a moment ago from
    a position are still exactly the next events after it: a pass reads them
    once. Only the last few reads are
    kept (a long catch-up would otherwise hold the whole log); a partition that
    fell further behind reads for itself. A new pass starts a new one.
    """

    KEPT = 8

    def __init__(self) -> None:
        self._reads: OrderedDict[ReadKey, Read] = OrderedDict()
        self._lock = threading.Lock()

    def read(
        self, start: LogPosition, limit: int, skip_snapshot: str, where: KeyedSlice | None = None
    ) -> Read:
        key = (start, limit, skip_snapshot, where)
        with self._lock:
            found = self._reads.get(key)
        if found is None:
            found = read_current(*key)
            with self._lock:
                self._reads[key] = found
                while len(self._reads) > self.KEPT:
                    self._reads.popitem(last=False)
        return found


class ReadAhead(SharedReads):
    """The reads of one long replay: while a batch is applied, the next one is
    read on a thread of its own (with a connection of its own), so the log's
    server and the wire work while the handlers run. A read that returns a
    full batch starts the read after it; a read of another place waits for
    that one to end and reads for itself. Only the last read and the one
    ahead are held (none of ``SharedReads``' own). ``close`` when done: it
    closes the thread's connections.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[ReadKey, Read] | None = None
        self._ahead: tuple[ReadKey, Future[Read]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")

    def read(
        self, start: LogPosition, limit: int, skip_snapshot: str, where: KeyedSlice | None = None
    ) -> Read:
        key = (start, limit, skip_snapshot, where)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            found = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].result()  # a read nobody wants now; done before another starts
            found = read_current(*key)
        self._last = (key, found)
        _, through, more = found
        if more:
            following = (through, limit, skip_snapshot, where)
            self._ahead = (following, self._pool.submit(_read_ahead, *following))
        return found

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].exception()  # wait for it; unwanted now, failed or not
            self._ahead = None
        self._last = None
        self._pool.submit(connections.close_all).result()
        self._pool.shutdown()


def _read_ahead(
    start: LogPosition, limit: int, skip_snapshot: str, where: KeyedSlice | None
) -> Read:
    return read_current(start, limit, skip_snapshot, where)


def next_in_log(
    batch: Sequence[StoredEvent],
    start: LogPosition,
    skip_snapshot: str,
    where: KeyedSlice | None = None,
    through: LogPosition | None = None,
) -> bool:
    """A batch handed in (a retry, a redelivery) applies only if it is exactly
    the next events of the log after the checkpoint: none applied, none
    skipped. For a slice, ``batch`` is the slice's part of events handed in
    up to ``through``: it must be every event of the slice after the
    checkpoint up to there."""
    if where is None:
        following, _, _ = read_current(start, len(batch), skip_snapshot)
        return [event.position for event in following] == [event.position for event in batch]
    last = through or batch[-1].log_position
    found: list[StoredEvent] = []
    position = start
    while position < last:
        events, position, more = read_current(
            position, len(batch) + 1, skip_snapshot, where, scan=MAX_SCAN
        )
        found += [event for event in events if event.log_position <= last]
        if not more:
            break
    return [event.position for event in found] == [event.position for event in batch]
