"""The read models, the projectors' checkpoints and their records (alias ``read``).

``config.routers`` sends every model listed in ``READ_MODEL_NAMES`` to
``read``. The event log they are built from is ``eventstore.models.Event``.
"""

from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Now


class ReadModelJSONField(models.JSONField):  # type: ignore[type-arg]
    """A JSON column decoded with orjson: projectors load thousands of rows a batch."""

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if isinstance(value, str) and not isinstance(expression, KeyTransform):
            return orjson.loads(value)
        return super().from_db_value(value, expression, connection)


class StockStatus(models.TextChoices):
    IN_STOCK = "in_stock", "In stock"
    LOW_STOCK = "low_stock", "Low stock"
    OUT_OF_STOCK = "out_of_stock", "Out of stock"


class ProductReadModel(models.Model):
    """Everything the product detail page shows, in one row."""

    product_id = models.BigIntegerField(primary_key=True)
    partition = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    slug = models.CharField(max_length=220)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    stock_quantity = models.PositiveIntegerField()
    stock_status = models.CharField(max_length=12, choices=StockStatus.choices)
    rating_sum = models.PositiveBigIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)
    avg_rating = models.DecimalField(max_digits=3, decimal_places=2, null=True)
    rating_histogram = ReadModelJSONField(default=list)  # [count of 1★, ..., count of 5★]
    seller_id = models.BigIntegerField()
    seller_name = models.CharField(max_length=200)
    seller_reputation = models.DecimalField(max_digits=3, decimal_places=2)
    related_products = ReadModelJSONField(default=list)  # [{id, name, price, avg_rating}]
    price_history = ReadModelJSONField(default=list)  # newest first: [{price, changed_at}]
    recent_reviews = ReadModelJSONField(default=list, encoder=DjangoJSONEncoder)
    last_position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["seller_id"], name="prm_seller"),
            models.Index(fields=["price", "product_id"], name="prm_price"),
            models.Index(fields=["-avg_rating", "product_id"], name="prm_rating"),
            models.Index(fields=["-review_count", "product_id"], name="prm_review_count"),
            models.Index(fields=["name", "product_id"], name="prm_name"),
        ]

    def __str__(self) -> str:
        return self.name


class SellerReadModel(models.Model):
    seller_id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    reputation = models.DecimalField(max_digits=3, decimal_places=2)
    product_count = models.PositiveIntegerField(default=0)
    rating_sum = models.PositiveBigIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)
    avg_rating = models.DecimalField(max_digits=3, decimal_places=2, null=True)
    last_position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class ReviewReadModel(models.Model):
    """The product projector's index of the reviews that count: enough to find
    a product's newest five when one of them is removed. Their author, title
    and text are read from the event log then (``eventlog.stream_events``), so
    this table stays narrow: a rebuild copies one row per review into it."""

    review_id = models.BigIntegerField(primary_key=True)
    product_id = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["product_id", "-created_at", "-review_id"], name="rrm_recent")
        ]

    def __str__(self) -> str:
        return f"review {self.review_id} on {self.product_id}"


class RelatedLink(models.Model):
    """Reverse index of "also bought": which rows show ``target_id``."""

    source_id = models.BigIntegerField()
    target_id = models.BigIntegerField()
    partition = models.PositiveSmallIntegerField()  # the source's partition

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_id", "target_id"], name="related_link_once")
        ]
        indexes = [models.Index(fields=["target_id", "partition"], name="related_by_target")]

    def __str__(self) -> str:
        return f"{self.source_id} shows {self.target_id}"


class ProductFacts(models.Model):
    """What a projector knows of a product: its name, price, rating sums.

    The sellers' projector keeps every product's (``partition`` 0). A product
    partition keeps its own products' only (``partition`` is the product's);
    other partitions read them under the row's lock when a list shows the
    product (``projections.projectors.product_store``).
    """

    projector = models.CharField(max_length=60)
    partition = models.PositiveSmallIntegerField()
    product_id = models.BigIntegerField()
    seller_id = models.BigIntegerField()
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    is_active = models.BooleanField(default=True)
    rating_sum = models.PositiveBigIntegerField(default=0)
    review_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projector", "partition", "product_id"], name="product_facts_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projector}[{self.partition}] product {self.product_id}"


class SellerFacts(models.Model):
    projector = models.CharField(max_length=60)
    partition = models.PositiveSmallIntegerField()
    seller_id = models.BigIntegerField()
    name = models.CharField(max_length=200)
    reputation = models.DecimalField(max_digits=3, decimal_places=2)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["projector", "partition", "seller_id"], name="seller_facts_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.projector}[{self.partition}] seller {self.seller_id}"


class Checkpoint(models.Model):
    """Where one partition of one projector stands in the event log.

    It is committed in the same transaction as the rows the batch changed.
    The batch holds the partition's advisory lock meanwhile (on PostgreSQL;
    ``projections.engine.checkpoints``): that lock is the partition's
    ownership, and it goes with a dead worker's connection.
    """

    projector = models.CharField(max_length=60)
    partition = models.PositiveSmallIntegerField()
    # How many partitions the projector has: the same on each of its rows.
    # ``PROJECTION_PARTITIONS`` when they are first made, then changed only by
    # a resize (``projections.resize``), under every partition's lock.
    partitions = models.PositiveSmallIntegerField(default=1)
    transaction_id = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    events_applied = models.PositiveBigIntegerField(default=0)
    owner = models.CharField(max_length=120, blank=True)
    heartbeat_at = models.DateTimeField(null=True)
    failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True)
    last_error = models.TextField(blank=True)
    halted_at_position = models.BigIntegerField(null=True)
    # Set by a rebuild that started from a snapshot of the write model: events
    # of transactions visible in that snapshot are already in the rows.
    skip_snapshot = models.CharField(max_length=2000, blank=True)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["projector", "partition"], name="checkpoint_once")
        ]

    def __str__(self) -> str:
        return f"{self.projector}[{self.partition}] at {self.transaction_id}/{self.position}"


class ParkedEvent(models.Model):
    class Status(models.TextChoices):
        PARKED = "parked", "Parked"
        RETRY = "retry", "Retry requested"
        SKIPPED = "skipped", "Skipped"
        RESOLVED = "resolved", "Applied after retry"

    projector = models.CharField(max_length=60)
    partition = models.PositiveSmallIntegerField()
    position = models.BigIntegerField()
    transaction_id = models.BigIntegerField()
    event_type = models.CharField(max_length=60)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    error = models.TextField()
    traceback = models.TextField()
    attempts = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PARKED)
    parked_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True)

    class Meta:
        indexes = [models.Index(fields=["projector", "partition", "status"], name="parked_open")]
        # Retrying or skipping changes what the read side shows; viewing is for all staff.
        permissions = [("resolve_parkedevent", "Can retry or skip parked events")]

    def __str__(self) -> str:
        return f"{self.projector}[{self.partition}] #{self.position} {self.event_type}"


class RebuildRun(models.Model):
    """One run of ``rebuild_projections``: what it is doing, and how it ended."""

    class Phase(models.TextChoices):
        BACKFILL = "backfill", "Backfilling from a snapshot"
        REPLAY = "replay", "Replaying the event log"
        TAIL = "tail", "Catching up with new events"
        SWAPPED = "swapped", "Swapped in"
        FAILED = "failed", "Failed"

    mode = models.CharField(max_length=20)
    phase = models.CharField(max_length=10, choices=Phase.choices)
    rows = models.PositiveBigIntegerField(default=0)
    events = models.PositiveBigIntegerField(default=0)
    events_total = models.PositiveBigIntegerField(default=0)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"rebuild #{self.pk} ({self.mode}): {self.phase}"
