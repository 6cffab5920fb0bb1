"""Reading the log for batches: the reads one pass of partitions shares,
and a long replay's read ahead."""

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import connections

from eventstore import eventlog
from eventstore.eventlog import LogPosition, StoredEvent
from eventstore.upcasting import upcast


def read_current(start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
    """The log's next events after ``start``, each upcast to its current
    version once, for every partition that shares the read."""
    return [
        upcast(event) for event in eventlog.read_events(start, limit, skip_snapshot=skip_snapshot)
    ]


class SharedReads:
    """The reads of the log made during one pass over the partitions.

    Every partition reads every event, and partitions that stand at the same
    place ask for the same events. The log below its horizon only grows at the
    end, so events read a moment ago from a position are still exactly the
    next events after it: a pass reads them once. Only the last few reads are
    kept (a long catch-up would otherwise hold the whole log); a partition that
    fell further behind reads for itself. A new pass starts a new one.
    """

    KEPT = 8

    def __init__(self) -> None:
        self._reads: OrderedDict[tuple[LogPosition, int, str], list[StoredEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
        key = (start, limit, skip_snapshot)
        with self._lock:
            events = self._reads.get(key)
        if events is None:
            events = read_current(start, limit, skip_snapshot)
            with self._lock:
                self._reads[key] = events
                while len(self._reads) > self.KEPT:
                    self._reads.popitem(last=False)
        return events


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
        self._last: tuple[tuple[LogPosition, int, str], list[StoredEvent]] | None = None
        self._ahead: tuple[tuple[LogPosition, int, str], Future[list[StoredEvent]]] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")

    def read(self, start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
        key = (start, limit, skip_snapshot)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            events = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].result()  # a read nobody wants now; done before another starts
            events = read_current(start, limit, skip_snapshot)
        self._last = (key, events)
        if len(events) == limit:
            following = (events[-1].log_position, limit, skip_snapshot)
            self._ahead = (following, self._pool.submit(_read_ahead, *following))
        return events

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].exception()  # wait for it; unwanted now, failed or not
            self._ahead = None
        self._last = None
        self._pool.submit(connections.close_all).result()
        self._pool.shutdown()


def _read_ahead(start: LogPosition, limit: int, skip_snapshot: str) -> list[StoredEvent]:
    return read_current(start, limit, skip_snapshot)


def next_in_log(batch: Sequence[StoredEvent], start: LogPosition, skip_snapshot: str) -> bool:
    """A batch handed in (a retry, a redelivery) applies only if it is exactly
    the next events of the log after the checkpoint: none applied, none skipped."""
    following = eventlog.read_events(start, len(batch), skip_snapshot=skip_snapshot)
    return [event.position for event in following] == [event.position for event in batch]
