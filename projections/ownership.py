"""Balanced ownership: which partitions a ``run_projectors`` process works on.

Every process could try every partition (a batch takes the partition's
transaction lock, so two never apply the same events), but a process that
reads a partition's events and then finds it busy has read them for nothing,
and with P processes each reading P partitions that is most of the work.
So each process claims its share and tries only those:

- a process announces itself by a session advisory lock on one of
  ``MAX_WORKERS`` presence slots, held on a connection of its own to the read
  database for as long as it runs; the workers are the slots held;
- every ``REBALANCE_SECONDS`` it lists them (W), ranks itself among them by
  slot, and takes its share of the partitions, every W-th one from its rank
  on (about P / W, each projector's spread over the processes): it lets go
  of the claims outside its share and claims the rest of it (session
  advisory locks again) as their last holders let go;
- a process that dies loses its connection, and with it its presence and its
  claims: the others count one worker fewer and claim what it held at their
  next rebalance. A new process claims what the others let go of at theirs.

Claims only choose which partitions a process tries; the batch's lock still
decides who applies. A partition is never left without a claimer for longer
than a rebalance or two, and between claims any process's batch may run it.

On SQLite there is one process: it works on every partition.
"""

import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

from django.db import connections

from eventstore.databases import READ_DB
from eventstore.listen import connection_params

logger = logging.getLogger(__name__)

MAX_WORKERS = 1024
REBALANCE_SECONDS = 1.0
PRESENCE_KEY = zlib.crc32(b"storefront-projector-presence") - 2**31

Partition = tuple[str, int]

# The presence slots held now: one per live process.
_WORKERS_SQL = """
    SELECT objid::text::int FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY 1
"""


def claim_key(name: str) -> int:
    return zlib.crc32(f"storefront-projector-claim:{name}".encode()) - 2**31


class Claims:
    """This process's presence and claimed partitions (PostgreSQL)."""

    def __init__(self, partitions: Sequence[Partition]) -> None:
        self.partitions = list(partitions)
        self.held: set[Partition] = set()
        self.workers = 1
        self._connection: Any = None
        self._slot: int | None = None
        self._next_rebalance = 0.0

    @staticmethod
    def wanted() -> bool:
        return connections[READ_DB].vendor == "postgresql"

    def owned(self) -> list[Partition]:
        """The partitions to try now, rebalanced when it is time."""
        if time.monotonic() >= self._next_rebalance:
            self.rebalance()
        return [partition for partition in self.partitions if partition in self.held]

    def rebalance(self) -> None:
        """Claim this process's share: with the live processes ranked by
        their presence slot, the partitions ``i`` with ``i % W == rank``
        (so each projector's partitions spread over the processes, and the
        one-partition sellers' projector goes to one of them). Claims beyond
        it are let go first; a share still held by another process is
        claimed at a later rebalance, once that one has let go of it."""
        self._next_rebalance = time.monotonic() + REBALANCE_SECONDS
        if self._connection is None:
            self._connect()
        if self._slot is None:
            return
        slots = self._live_slots()
        self.workers = max(1, len(slots))
        rank = slots.index(self._slot) if self._slot in slots else 0
        share = {
            partition
            for index, partition in enumerate(self.partitions)
            if index % self.workers == rank
        }
        for partition in sorted(self.held - share):
            self._execute(
                "SELECT pg_advisory_unlock(%s, %s)", [claim_key(partition[0]), partition[1]]
            )
            self.held.discard(partition)
        for partition in [p for p in self.partitions if p in share - self.held]:
            key = claim_key(partition[0])
            if self._execute("SELECT pg_try_advisory_lock(%s, %s)", [key, partition[1]]):
                self.held.add(partition)

    def close(self) -> None:
        """Let go of everything (the connection's end does it too)."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
                self.held.clear()
                self._slot = None

    def _connect(self) -> None:
        import psycopg

        self._connection = psycopg.connect(**connection_params(READ_DB), autocommit=True)
        self.held.clear()
        for slot in range(MAX_WORKERS):
            if self._execute("SELECT pg_try_advisory_lock(%s, %s)", [PRESENCE_KEY, slot]):
                self._slot = slot
                return
        logger.warning("More than %s projector processes: this one claims nothing.", MAX_WORKERS)

    def _live_slots(self) -> list[int]:
        rows = self._connection.execute(_WORKERS_SQL, [PRESENCE_KEY]).fetchall()
        return [int(row[0]) for row in rows]

    def _execute(self, sql: str, params: list[Any]) -> Any:
        row = self._connection.execute(sql, params).fetchone()
        return row[0]
