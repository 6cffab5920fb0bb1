"""Balanced ownership: which partitions a ``run_projectors`` process works on.

Every process could try every partition (a batch takes the partition's
transaction lock, so two never apply the same events), but a process that
reads a partition's events and then finds it busy has read them for nothing,
and with P processes each reading P partitions that is most of the work.
So each process claims its share and tries only those:

- a process announces itself, for each projector it runs, by a session
  advisory lock on one of ``MAX_WORKERS`` presence slots of that projector,
  held on a connection of its own to the read database for as long as it
  runs; a projector's workers are its slots held;
- every ``REBALANCE_SECONDS`` it lists them (W), ranks itself among them by
  slot, and takes its share of the partitions, every W-th one from its rank
  on (about P / W, each projector's spread over the processes): it lets go
  of the claims outside its share and claims the rest of it (session
  advisory locks again) as their last holders let go;
- a process that dies loses its connection, and with it its presence and its
  claims (a host that vanishes: when the server's TCP keepalives give up,
  about ten seconds): the others count one worker fewer and claim what it
  held at their next rebalance. A new process claims what the others let go
  of at theirs. An error on the claims' own connection drops them (the
  others take over) and the process claims again a second later; an error
  of the loop's other connections leaves them.

Claims only choose which partitions a process tries; the batch's lock still
decides who applies. A partition is never left without a claimer for longer
than a rebalance or two, and between claims any process's batch may run it.

On SQLite there is one process: it works on every partition.
"""

import contextlib
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

Partition = tuple[str, int]

# The presence slots of one projector held now: one per live process that runs it.
_WORKERS_SQL = """
    SELECT objid::text::int FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s::oid
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY 1
"""
# The server notices a dead peer (a host gone, a cable cut) within about ten
# seconds, and ends its session: its presence and claims with it. Without
# these, the kernel's defaults would keep them for about two hours.
_KEEPALIVES = (
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 10000",
)


def presence_key(name: str) -> int:
    return zlib.crc32(f"storefront-projector-presence:{name}".encode()) - 2**31


def claim_key(name: str) -> int:
    return zlib.crc32(f"storefront-projector-claim:{name}".encode()) - 2**31


class Claims:
    """This process's presence and claimed partitions (PostgreSQL), per
    projector: processes that run different projectors divide each one's
    partitions among those that run it."""

    def __init__(self, partitions: Sequence[Partition]) -> None:
        self.partitions = list(partitions)
        self.names = list(dict.fromkeys(name for name, _ in self.partitions))
        self.held: set[Partition] = set()
        self.workers: dict[str, int] = {}
        self._connection: Any = None
        self._slots: dict[str, int] = {}
        self._next_rebalance = 0.0

    @staticmethod
    def wanted() -> bool:
        return connections[READ_DB].vendor == "postgresql"

    def follow(self, partitions: Sequence[Partition]) -> None:
        """Divide these partitions of the same projectors from now on (a
        resize changed them): rebalanced at once, not at the next second."""
        if list(partitions) != self.partitions:
            self.partitions = list(partitions)
            self._next_rebalance = 0.0

    def owned(self) -> list[Partition]:
        """The partitions to try now, rebalanced when it is time."""
        if time.monotonic() >= self._next_rebalance:
            self._next_rebalance = time.monotonic() + REBALANCE_SECONDS
            try:
                self.rebalance()
            except Exception as error:  # its own connection: the loop's are not touched
                logger.warning("Projector claims lost (%s); claiming again soon.", error)
                self.close()
        return [partition for partition in self.partitions if partition in self.held]

    def rebalance(self) -> None:
        """Claim this process's share of each projector: with the processes
        that run it ranked by their presence slot, its partitions ``i`` with
        ``i % W == rank``. Claims beyond it are let go first; a share still
        held by another process is claimed at a later rebalance, once that
        one has let go of it."""
        if self._connection is None:
            self._connect()
        share: set[Partition] = set()
        for name in self.names:
            slots = self._live_slots(name)
            workers = self.workers[name] = max(1, len(slots))
            mine = self._slots.get(name)
            if mine is None or mine not in slots:
                continue  # no slot (too many processes): it claims nothing of this one
            rank = slots.index(mine)
            partitions = [partition for partition in self.partitions if partition[0] == name]
            share |= {p for index, p in enumerate(partitions) if index % workers == rank}
        for partition in sorted(self.held - share):
            key = claim_key(partition[0])
            self._execute("SELECT pg_advisory_unlock(%s, %s)", [key, partition[1]])
            self.held.discard(partition)
        for partition in [p for p in self.partitions if p in share - self.held]:
            key = claim_key(partition[0])
            if self._execute("SELECT pg_try_advisory_lock(%s, %s)", [key, partition[1]]):
                self.held.add(partition)

    def close(self) -> None:
        """Let go of everything (the connection's end does it too)."""
        connection, self._connection = self._connection, None
        self.held.clear()
        self._slots.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _connect(self) -> None:
        import psycopg

        self._connection = psycopg.connect(**connection_params(READ_DB), autocommit=True)
        for statement in _KEEPALIVES:
            self._connection.execute(statement)
        self.held.clear()
        for name in self.names:
            key = presence_key(name)
            for slot in range(MAX_WORKERS):
                if self._execute("SELECT pg_try_advisory_lock(%s, %s)", [key, slot]):
                    self._slots[name] = slot
                    break
            else:
                logger.warning("More than %s %s projector processes: one idles.", MAX_WORKERS, name)

    def _live_slots(self, name: str) -> list[int]:
        rows = self._connection.execute(_WORKERS_SQL, [presence_key(name)]).fetchall()
        return [int(row[0]) for row in rows]

    def _execute(self, sql: str, params: list[Any]) -> Any:
        row = self._connection.execute(sql, params).fetchone()
        return row[0]
