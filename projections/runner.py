"""The long-running projector loop behind ``manage.py run_projectors``.

On PostgreSQL it sleeps on ``LISTEN storefront_events`` (the write side
notifies on commit), so new events are projected within milliseconds without
polling; a timeout still sweeps every second in case a notification was
missed. On SQLite it polls, backing off from 20 ms to 1 s while idle.
"""

import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from django.db import connections

from projections.engine import Projection, catch_up, default_owner, ensure_checkpoints
from projections.eventlog import WRITE_DB
from projections.pg import listening_connection
from projections.receivers import EVENTS_CHANNEL

logger = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
MIN_POLL_SECONDS = 0.02


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

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("Signal %s: stopping after the current batch.", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run_once(self) -> int:
        """One pass over every partition, on ``threads`` threads: a batch mostly
        waits on the databases, so with more than one the partitions overlap."""
        work: list[tuple[type[Projection], int]] = []
        for projection in self.projections:
            ensure_checkpoints(projection)
            work.extend(
                (projection, partition) for partition in range(projection.partition_count())
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="projector")
        futures = [self._pool.submit(self._catch_up, *item) for item in work]
        return sum(future.result() for future in futures)

    def _catch_up(self, projection: type[Projection], partition: int) -> int:
        if self.stopping.is_set():
            return 0
        return catch_up(projection, partition, batch_size=self.batch_size, owner=self.owner)

    def run_forever(self) -> None:
        idle_wait = MIN_POLL_SECONDS
        self._listen()
        try:
            while not self.stopping.is_set():
                if self.run_once():
                    idle_wait = MIN_POLL_SECONDS
                    continue
                if self._listener is not None:
                    self._wait_for_notification(SWEEP_SECONDS)
                else:
                    self.stopping.wait(idle_wait)
                    idle_wait = min(idle_wait * 2, SWEEP_SECONDS)
        finally:
            self._unlisten()
            if self._pool is not None:
                self._pool.shutdown()

    def _listen(self) -> None:
        if connections[WRITE_DB].vendor != "postgresql":
            return
        self._listener = listening_connection(WRITE_DB, EVENTS_CHANNEL)

    def _wait_for_notification(self, timeout: float) -> None:
        assert self._listener is not None
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for _ in self._listener.notifies(timeout=min(remaining, 0.25), stop_after=1):
                return

    def _unlisten(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
