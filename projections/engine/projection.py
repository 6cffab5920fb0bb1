"""What a projector is to the engine: a ``Projection`` with one handler per
event type (``@handles``), ``prepare`` to load what a batch needs and
``flush`` to write it back."""

from collections.abc import Sequence
from typing import Any, ClassVar

from eventstore.eventlog import KeyedSlice, StoredEvent
from projections.engine import layout


class Projection:
    """One batch's worth of a projector's work on one partition.

    Subclasses name themselves, declare their handlers with ``@handles``, load
    what the batch needs in ``prepare`` and write it back in ``flush``.
    """

    name: ClassVar[str]
    partitioned: ClassVar[bool] = False
    handlers: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = {
            event_type: attribute
            for klass in reversed(cls.__mro__)
            for attribute, member in vars(klass).items()
            for event_type in getattr(member, "handles_events", ())
        }

    def __init__(self, partition: int, partitions: int) -> None:
        self.partition = partition
        self.partitions = partitions
        # The checkpoint as this instance's last batch committed it; None while
        # nothing it keeps is known to match the tables (see ``forget``).
        self.kept_at: tuple[Any, ...] | None = None

    def forget(self) -> None:
        """Drop whatever the instance keeps between batches.

        An instance handed to ``run_batch`` for batch after batch (by a runner
        or a rebuild's replay) may keep the rows it loaded and wrote, and load
        only what it does not have yet. The engine calls this whenever those
        rows may no longer be the tables': a failed batch, or a checkpoint not
        exactly as this instance's last batch left it (another worker moved
        it, a rebuild swapped the tables, ``verify_projections --fix`` touched
        every checkpoint). Projections that keep nothing need not override it.
        """

    @classmethod
    def partition_count(cls) -> int:
        """How many partitions the projector has now (``engine.layout``)."""
        return layout.partition_count(cls.name, cls.partitioned)

    @classmethod
    def recent_partition_count(cls) -> int:
        """``partition_count`` as read at most a second ago (``engine.layout``)."""
        return layout.recent_partition_count(cls.name, cls.partitioned)

    def log_slice(self) -> KeyedSlice | None:
        """The part of the log this partition applies; None for all of it.

        A partition reads only its slice, and moves its checkpoint past the
        other slices' events as it passes them.
        """
        return None

    def hold(self, events: Sequence[StoredEvent]) -> int:
        """Take, in the batch's transaction, what the batch needs of other
        partitions' rows (locks included), before ``prepare``; return how
        many of ``events``, from the first, can be applied now. The engine
        applies those and leaves the rest for a later batch; none is
        ``Outcome.WAITING``."""
        return len(events)

    def prepare(self, events: Sequence[StoredEvent]) -> None:
        """Load, in a few queries, the rows that ``events`` will touch."""

    def apply(self, event: StoredEvent) -> None:
        attribute = self.handlers.get(event.event_type)
        if attribute is not None:
            getattr(self, attribute)(event)

    def flush(self) -> None:
        """Write every row the batch changed."""


def handles(*event_types: str) -> Any:
    def mark(method: Any) -> Any:
        method.handles_events = event_types
        return method

    return mark
