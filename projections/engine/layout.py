"""How many partitions a projector has: its layout.

The count lives in the database, on every checkpoint row of the projector
(``Checkpoint.partitions``). ``PROJECTION_PARTITIONS`` gives the count the
rows are first made with; after that only a resize changes it
(``projections.resize``), in one transaction under every partition's lock.
A batch reads the count with its checkpoint under the partition's lock, so
it always applies with the count its rows were written with; what needs
only a recent count (which partitions to wake or to claim) reads it here.
"""

import contextlib
import time
from collections.abc import Iterator

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from projections.models import Checkpoint

# How long a process trusts the count it read, where a recent one will do.
RECENT_SECONDS = 1.0

_recent: dict[str, tuple[float, int]] = {}
_pinned: dict[str, int] = {}


def partition_count(name: str, partitioned: bool) -> int:
    """The count the projector's rows say now (the setting's before any row
    exists), or the one a rebuild pinned for its run (``pinned``)."""
    if not partitioned:
        return 1
    if name in _pinned:
        return _pinned[name]
    count = Checkpoint.objects.filter(projector=name).values_list("partitions", flat=True).first()
    counted = count if count is not None else int(settings.PROJECTION_PARTITIONS)
    _recent[name] = (time.monotonic(), counted)
    return counted


def recent_partition_count(name: str, partitioned: bool) -> int:
    """``partition_count``, read at most once per ``RECENT_SECONDS``: for
    choosing which partitions to wake or claim, where a count a second old
    costs a wasted task or a second's wait, never a wrong row."""
    if partitioned and name not in _pinned:
        seen = _recent.get(name)
        if seen is not None and time.monotonic() - seen[0] < RECENT_SECONDS:
            return seen[1]
    return partition_count(name, partitioned)


def forget_recent() -> None:
    _recent.clear()


@contextlib.contextmanager
def pinned(counts: dict[str, int]) -> Iterator[None]:
    """Hold each named projector at a count for the block: a rebuild builds
    its shadow with the live layout, while its ``read`` alias points at the
    shadow's (still empty) checkpoints."""
    before = dict(_pinned)
    _pinned.update(counts)
    try:
        yield
    finally:
        _pinned.clear()
        _pinned.update(before)


@receiver(setting_changed)
def _setting_changed(setting: str, **kwargs: object) -> None:
    if setting == "PROJECTION_PARTITIONS":
        forget_recent()
