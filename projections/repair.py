"""``verify_projections --fix``: make the read side exact while commands flow.

Writing today's truth into rows whose checkpoint lags would count twice: the
projectors would then apply, on top of it, the events the truth already
holds. So a repair makes the read side exact as of one snapshot of the write
model and tells every partition so:

1. hold every partition of every projector (their advisory locks on the
   read database, in one transaction: running batches finish first, new ones
   wait), and refuse while a partition is halted behind a parked event;
2. read the truth from one snapshot of the write model: a REPEATABLE READ
   transaction on PostgreSQL (its snapshot is recorded), an IMMEDIATE one on
   SQLite, whose writers wait meanwhile (the log's end is recorded);
3. compare, and rewrite what differs in every store the projectors read or
   write: the read-model rows, both projectors' product facts, the product
   partitions' seller facts, the review store and the "also bought" links;
4. move every checkpoint to that snapshot: on PostgreSQL the events of the
   transactions it shows are skipped from now on (``skip_snapshot``, as after
   a rebuild), on SQLite the checkpoint moves to the log's end it saw; and
   commit, with a notification to waiting readers.

Events the snapshot did not show are applied afterwards as usual, once.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from eventstore import eventlog
from eventstore.databases import READ_DB, WRITE_DB
from eventstore.eventlog import LogPosition
from projections import expected as truth
from projections.engine import Projection, hold_partition, notify_checkpoints_changed
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
    SellerReadModel,
)
from projections.registry import PROJECTIONS
from projections.upserts import upsert

PRODUCT_FACT_FIELDS = ("seller_id", "name", "price", "is_active", "rating_sum", "review_count")
# What the seller projector keeps up to date in its own facts.
SELLER_PROJECTOR_FACT_FIELDS = ("seller_id", "is_active")
REVIEW_CHUNK = 20_000


class RepairRefused(Exception):
    """The read side cannot be repaired now; the message says why."""


@dataclasses.dataclass
class Repaired:
    """What a repair rewrote, by store."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, store: str, count: int) -> None:
        self.counts[store] = self.counts.get(store, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def repair() -> Repaired:
    """Make every store of the read side exact as of a snapshot of the write
    model, holding the projectors meanwhile; see the module docstring.

    Runs its own transactions: none may be open on either database.
    """
    if connections[READ_DB].in_atomic_block or connections[WRITE_DB].in_atomic_block:
        raise RepairRefused("A repair runs its own transactions; none may be open.")
    repaired = Repaired()
    with transaction.atomic(using=READ_DB):
        for projection in PROJECTIONS.values():
            _hold_every_partition(projection)
        halted = list(Checkpoint.objects.filter(halted_at_position__isnull=False))
        if halted:
            names = ", ".join(f"{c.projector}[{c.partition}]" for c in halted)
            raise RepairRefused(
                f"{names} halted behind a parked event: retry or skip it first "
                "(manage.py parked_events), then repair."
            )
        with _snapshot() as moment:
            expected = _Truth.read()
            _repair_rows(expected, repaired)
            _repair_facts(expected, repaired)
            _repair_links(expected, repaired)
            _repair_reviews(repaired)
        _move_checkpoints(moment)
        notify_checkpoints_changed()
    return repaired


def _hold_every_partition(projection: type[Projection]) -> None:
    """Hold each partition of the projector for the transaction. A resize
    needs every partition's lock, so once all of them are held the count
    stands; a resize that committed between reading it and holding them
    made more, and those are held too."""
    held = 0
    while (count := projection.partition_count()) > held:
        for partition in range(held, count):
            hold_partition(projection.name, partition)
        held = count


@dataclasses.dataclass(frozen=True)
class _Moment:
    """The snapshot the repaired read side stands at."""

    snapshot: str  # PostgreSQL: pg_current_snapshot() as text
    position: int  # SQLite: the log's last position


class _snapshot:
    """One consistent view of the write model for the whole truth."""

    def __enter__(self) -> _Moment:
        self._atomic = transaction.atomic(using=WRITE_DB)
        self._atomic.__enter__()
        connection = connections[WRITE_DB]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute("SELECT pg_current_snapshot()::text")
                return _Moment(snapshot=cursor.fetchone()[0], position=0)
            cursor.execute("SELECT coalesce(max(position), 0) FROM projections_event")
            return _Moment(snapshot="", position=int(cursor.fetchone()[0]))

    def __exit__(self, *exc: Any) -> None:
        self._atomic.__exit__(*exc)


@dataclasses.dataclass
class _Truth:
    products: dict[int, dict[str, Any]]
    sellers: dict[int, dict[str, Any]]

    @classmethod
    def read(cls) -> "_Truth":
        return cls(products=truth.expected_products(), sellers=truth.expected_sellers())


def _repair_rows(expected: _Truth, repaired: Repaired) -> None:
    now = timezone.now()
    actual_products = truth.actual_products()
    wrong = truth.drift(expected.products, actual_products, truth.PRODUCT_FIELDS)
    fields = [f.name for f in ProductReadModel._meta.concrete_fields if not f.primary_key]
    rows = [
        ProductReadModel(
            product_id=pk,
            last_position=(actual_products.get(pk) or {}).get("last_position", 0),
            updated_at=now,
            **expected.products[pk],
        )
        for pk in wrong
        if pk in expected.products
    ]
    upsert(ProductReadModel, rows, conflict=["product_id"], update=fields)
    ProductReadModel.objects.filter(
        pk__in=[pk for pk in wrong if pk not in expected.products]
    ).delete()
    repaired.add("product rows", len(wrong))

    actual_sellers = truth.actual_sellers()
    wrong = truth.drift(expected.sellers, actual_sellers, truth.SELLER_FIELDS)
    fields = [f.name for f in SellerReadModel._meta.concrete_fields if not f.primary_key]
    sellers = [
        SellerReadModel(
            seller_id=pk,
            last_position=(actual_sellers.get(pk) or {}).get("last_position", 0),
            updated_at=now,
            **expected.sellers[pk],
        )
        for pk in wrong
        if pk in expected.sellers
    ]
    upsert(SellerReadModel, sellers, conflict=["seller_id"], update=fields)
    SellerReadModel.objects.filter(
        pk__in=[pk for pk in wrong if pk not in expected.sellers]
    ).delete()
    repaired.add("seller rows", len(wrong))


def _fact_scopes() -> list[tuple[str, int, int, tuple[str, ...]]]:
    """Who keeps product facts: each product partition those of its own
    products (a product's id modulo the partitions), the sellers' projector
    every product's."""
    products = PROJECTIONS["products"]
    count = products.partition_count()
    scopes: list[tuple[str, int, int, tuple[str, ...]]] = [
        (products.name, partition, count, PRODUCT_FACT_FIELDS) for partition in range(count)
    ]
    scopes.append((PROJECTIONS["sellers"].name, 0, 1, SELLER_PROJECTOR_FACT_FIELDS))
    return scopes


def _repair_facts(expected: _Truth, repaired: Repaired) -> None:
    every = {
        pk: {field: row[field] for field in PRODUCT_FACT_FIELDS}
        for pk, row in expected.products.items()
    }
    for projector, partition, modulus, compared in _fact_scopes():
        want = {pk: fields for pk, fields in every.items() if pk % modulus == partition}
        have = {
            row["product_id"]: row
            for row in ProductFacts.objects.filter(projector=projector, partition=partition).values(
                "product_id", *compared
            )
        }
        wrong = [
            pk
            for pk, fields in want.items()
            if pk not in have or any(have[pk][field] != fields[field] for field in compared)
        ]
        upsert(
            ProductFacts,
            [
                ProductFacts(projector=projector, partition=partition, product_id=pk, **want[pk])
                for pk in wrong
            ],
            conflict=["projector", "partition", "product_id"],
            update=list(PRODUCT_FACT_FIELDS),
        )
        extra = set(have) - set(want)
        ProductFacts.objects.filter(
            projector=projector, partition=partition, product_id__in=extra
        ).delete()
        repaired.add("product facts", len(wrong) + len(extra))

    sellers = {pk: (row["name"], row["reputation"]) for pk, row in expected.sellers.items()}
    products = PROJECTIONS["products"]
    for partition in range(products.partition_count()):
        scope = {"projector": products.name, "partition": partition}
        have = {
            pk: (name, reputation)
            for pk, name, reputation in SellerFacts.objects.filter(**scope).values_list(
                "seller_id", "name", "reputation"
            )
        }
        wrong = [pk for pk, fields in sellers.items() if have.get(pk) != fields]
        upsert(
            SellerFacts,
            [
                SellerFacts(**scope, seller_id=pk, name=sellers[pk][0], reputation=sellers[pk][1])
                for pk in wrong
            ],
            conflict=["projector", "partition", "seller_id"],
            update=["name", "reputation"],
        )
        extra = set(have) - set(sellers)
        SellerFacts.objects.filter(**scope, seller_id__in=extra).delete()
        repaired.add("seller facts", len(wrong) + len(extra))


def _repair_links(expected: _Truth, repaired: Repaired) -> None:
    partitions = PROJECTIONS["products"].partition_count()
    want = {
        (pk, entry["id"]): pk % partitions
        for pk, row in expected.products.items()
        for entry in row["related_products"]
    }
    have = {
        (source, target): partition
        for source, target, partition in RelatedLink.objects.values_list(
            "source_id", "target_id", "partition"
        )
    }
    wrong = {link for link, partition in have.items() if want.get(link) != partition}
    missing = {link for link in want if link not in have}
    for source, target in wrong:
        RelatedLink.objects.filter(source_id=source, target_id=target).delete()
    RelatedLink.objects.bulk_create(
        RelatedLink(source_id=source, target_id=target, partition=want[(source, target)])
        for source, target in sorted(missing | (wrong & want.keys()))
    )
    repaired.add("related links", len(wrong) + len(missing))


def _repair_reviews(repaired: Repaired) -> None:
    """The review store against the counted reviews, both read in review id
    order a chunk at a time, so the whole store is never held at once."""
    extra: list[int] = []
    wrong: list[ReviewReadModel] = []
    stored = _chunks(
        ReviewReadModel.objects.order_by("review_id").values_list(
            "review_id", "product_id", "created_at"
        )
    )
    for review in _merge(_counted_reviews(), stored, extra):
        wrong.append(review)
        if len(wrong) >= REVIEW_CHUNK:
            _write_reviews(wrong, repaired)
    _write_reviews(wrong, repaired)
    for start in range(0, len(extra), REVIEW_CHUNK):
        ReviewReadModel.objects.filter(review_id__in=extra[start : start + REVIEW_CHUNK]).delete()
    repaired.add("review store", len(extra))


def _counted_reviews() -> Iterator[tuple[int, int, Any]]:
    from reviews.models import Review

    return _chunks(
        Review.objects.filter(is_hidden=False)
        .order_by("pk")
        .values_list("pk", "product_id", "created_at")
    )


def _chunks(rows: Any) -> Iterator[tuple[int, int, Any]]:
    """Every row of an id-ordered query, by keyset pages."""
    last = 0
    while True:
        page = list(rows.filter(pk__gt=last)[:REVIEW_CHUNK])
        yield from page
        if len(page) < REVIEW_CHUNK:
            return
        last = page[-1][0]


def _merge(
    want: Iterator[tuple[int, int, Any]],
    have: Iterator[tuple[int, int, Any]],
    extra: list[int],
) -> Iterator[ReviewReadModel]:
    """The store entries to write (missing or different); ``extra`` gets the
    ids the store has but should not."""
    stored = next(have, None)
    for review in want:
        while stored is not None and stored[0] < review[0]:
            extra.append(stored[0])
            stored = next(have, None)
        if stored is None or stored != review:
            yield ReviewReadModel(review_id=review[0], product_id=review[1], created_at=review[2])
        if stored is not None and stored[0] == review[0]:
            stored = next(have, None)
    while stored is not None:
        extra.append(stored[0])
        stored = next(have, None)


def _write_reviews(reviews: list[ReviewReadModel], repaired: Repaired) -> None:
    upsert(ReviewReadModel, reviews, conflict=["review_id"], update=["product_id", "created_at"])
    repaired.add("review store", len(reviews))
    reviews.clear()


def _move_checkpoints(moment: _Moment) -> None:
    """Every partition stands at the snapshot; projectors that keep rows
    between batches load them again (``updated_at`` changes).

    On PostgreSQL a checkpoint also moves up to the last event of the
    transactions older than every one the snapshot saw running (all of them
    are in it), so a reader waiting for one of those events is answered now;
    the snapshot's other events are skipped when the projector reaches them.
    """
    now = timezone.now()
    checkpoints = Checkpoint.objects.filter(projector__in=PROJECTIONS)
    if not moment.snapshot:
        checkpoints.update(transaction_id=0, position=moment.position, updated_at=now)
        return
    settled = eventlog.last_before_snapshot(moment.snapshot)
    for checkpoint in checkpoints:
        if LogPosition(checkpoint.transaction_id, checkpoint.position) < settled:
            checkpoint.transaction_id = settled.transaction_id
            checkpoint.position = settled.position
        checkpoint.skip_snapshot = moment.snapshot
        checkpoint.updated_at = now
        checkpoint.save(update_fields=["transaction_id", "position", "skip_snapshot", "updated_at"])
