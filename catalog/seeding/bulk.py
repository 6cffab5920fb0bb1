"""Seed a large demo shop fast: write-model rows and their events straight into the tables.

The services write one command at a time, which is right for a shop and far
too slow for millions of demo reviews. This writes the same rows and exactly
the events those commands would have recorded: each event is built with the
command's own ``DomainEvent`` class, so its type, version, stream and payload
(Decimals as strings, datetimes in ISO format) cannot differ.

Events go in kind by kind, in dependency order: sellers, products (with their
first price), recommendations, price changes, reviews, products taken off
sale. Within a kind they follow the time they happened, so every product's own
stream reads as it would have. Everything is one transaction on ``default``:
a failure leaves nothing behind, and readers of the log see all of it at once
(on PostgreSQL every event carries that transaction's id and goes in position
order behind it).

PostgreSQL gets ``COPY``, and a table that the load at least doubles loses
its secondary indexes and unique and foreign-key constraints for the load and
gets them back at the end, inside the same transaction: one sort per index
and one join per foreign key instead of a lookup per row. Other databases get
batched ``INSERT``s. Row ids come from each table's own sequence, reserved as
one block per table under a lock that keeps other writers out until commit,
so the events can name them.
"""

import bisect
import contextlib
import dataclasses
import functools
import itertools
import json
import operator
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, JSONField, Model
from django.utils import timezone
from django.utils.text import slugify

from catalog.models import PriceChange, Product, Recommendation, Seller
from catalog.seeding import demo
from catalog.signals import (
    DomainEvent,
    PriceChanged,
    ProductCreated,
    ProductDetailsChanged,
    RecommendationsChanged,
    SellerRegistered,
    command_transaction,
)
from catalog.validation import MAX_RECOMMENDATIONS
from projections.models import Event
from reviews.models import Review
from reviews.signals import ReviewAdded

WRITE_DB = "default"
HISTORY = timedelta(days=365)
# Products launch over the first three quarters of the year of history.
LAUNCH_WINDOW = 0.75
INSERT_BATCH = 2000
PROGRESS_STEP = 10_000
# Below this many new rows a table keeps its indexes during the load.
REBUILD_FROM_ROWS = 10_000
# Distinct review texts kept per (noun, material, stars); more are drawn from these.
BODIES_PER_KIND = 40

USER_FIELDS = (
    *("id", "password", "is_superuser", "username", "first_name", "last_name"),
    *("email", "is_staff", "is_active", "date_joined"),
)
PRODUCT_FIELDS = (
    *("id", "seller", "name", "slug", "description", "price", "stock_quantity"),
    *("is_active", "created_at", "updated_at"),
)
REVIEW_FIELDS = ("id", "product", "author", "rating", "body", "created_at", "is_hidden")
EVENT_FIELDS = ("stream_type", "stream_id", "event_type", "version", "payload")


class Progress(Protocol):
    """Opens a progress display for ``total`` items of one kind; the callable
    it yields is called with the number of items just done."""

    def __call__(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


@dataclasses.dataclass(frozen=True)
class BulkSummary:
    sellers: int
    products: int
    reviews: int
    reviewers: int
    price_changes: int
    events: int
    hot_product: Product | None
    hot_reviews: int


@dataclasses.dataclass(slots=True)
class _Product:
    """A product as planned: what ProductCreated said, then its final state."""

    id: int
    seller_id: int
    sketch: demo.ProductSketch
    slug: str
    description: str
    first_price: Decimal
    first_price_change_id: int
    stock_quantity: int
    created_at: datetime
    price: Decimal
    updated_at: datetime
    is_active: bool = True


@dataclasses.dataclass(slots=True)
class _PriceChange:
    id: int
    product: _Product
    price: Decimal
    previous_price: Decimal
    changed_at: datetime

    @property
    def changed_at_iso(self) -> str:
        return self.changed_at.isoformat()


class _Review(NamedTuple):
    id: int
    product_id: int
    author_id: int
    author_json: str  # the author's username as a JSON string
    rating: int
    body: "_Body"
    created_at: str  # ISO 8601, as the event says it


class _Body(NamedTuple):
    text: str
    json: str


@dataclasses.dataclass
class _Plan:
    seller_ids: list[int]
    seller_names: list[str]
    reputations: list[Decimal]
    new_reviewers: list[tuple[int, str]]
    reviewers: int
    products: list[_Product]
    links: list[tuple[_Product, list[_Product]]]
    changes: list[_PriceChange]
    reviews: list[_Review]
    off_sale: list[_Product]
    hot: _Product | None
    hot_reviews: int


def bulk_seed(
    sizes: demo.Sizes, rng: random.Random, *, progress: Progress, now: datetime | None = None
) -> BulkSummary:
    """Write ``sizes`` worth of demo data and its events in one transaction."""
    tables = _Tables.for_connection(connections[WRITE_DB], progress)
    with command_transaction():  # announced first: reserving ids writes
        plan = _Planner(sizes, rng, tables, now or timezone.now()).plan()
        events = _Loader(tables).load(plan)
    tables.analyze()
    return BulkSummary(
        sellers=len(plan.seller_ids),
        products=len(plan.products),
        reviews=len(plan.reviews),
        reviewers=plan.reviewers,
        price_changes=len(plan.changes),
        events=events,
        hot_product=Product.objects.get(pk=plan.hot.id) if plan.hot else None,
        hot_reviews=plan.hot_reviews,
    )


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class _Planner:
    """Draws the whole shop in memory, ids included (reserved from the tables)."""

    def __init__(
        self, sizes: demo.Sizes, rng: random.Random, tables: "_Tables", now: datetime
    ) -> None:
        self.sizes = sizes
        self.rng = rng
        self.tables = tables
        self.now = now
        self.start = now - HISTORY

    def plan(self) -> _Plan:
        sizes, rng = self.sizes, self.rng
        seller_names = demo.seller_names(sizes.sellers)
        reputations = [demo.reputation(rng) for _ in seller_names]
        first_seller = self.tables.reserve(Seller, sizes.sellers)
        seller_ids = [first_seller + offset for offset in range(sizes.sellers)]
        products = self._products(seller_ids)
        popularity = demo.popularity(rng, len(products))
        cumulative = list(itertools.accumulate(popularity))
        links = [
            (product, [products[pick] for pick in picks])
            for index, product in enumerate(products)
            if (picks := demo.related_picks(rng, index, cumulative, MAX_RECOMMENDATIONS))
        ]
        changes = self._price_changes(products, cumulative)
        counts = demo.review_counts(rng, popularity, sizes.reviews, hot_reviews=sizes.hot_reviews)
        hot_index = demo.hot_product(popularity)
        hot = products[hot_index] if hot_index is not None else None
        if hot is not None:
            # It is hot because people like it.
            hot.sketch = dataclasses.replace(hot.sketch, quality=abs(hot.sketch.quality) + 0.4)
        busiest = max(counts.values(), default=0)
        reviewers, new_reviewers = self._reviewers(demo.reviewers_needed(busiest, sizes.reviews))
        reviews = self._reviews(products, counts, reviewers)
        off_sale = [product for product in products if product is not hot]
        off_sale = off_sale[: len(products) // 50]
        for product in off_sale:
            product.is_active = False
            product.updated_at = self.now
        return _Plan(
            seller_ids=seller_ids,
            seller_names=seller_names,
            reputations=reputations,
            new_reviewers=new_reviewers,
            reviewers=len(reviewers),
            products=products,
            links=links,
            changes=changes,
            reviews=reviews,
            off_sale=off_sale,
            hot=hot,
            hot_reviews=counts[hot_index] if hot_index is not None else 0,
        )

    def _products(self, seller_ids: Sequence[int]) -> list[_Product]:
        rng, count = self.rng, self.sizes.products
        sketches = [demo.sketch_product(rng) for _ in range(count)]
        seller_weights = list(
            itertools.accumulate(1 / rank for rank in range(1, len(seller_ids) + 1))
        )
        # Launch times first: ids follow them, as they would in a real shop.
        launch = LAUNCH_WINDOW * HISTORY.total_seconds()
        start = self.start.timestamp()
        launches = sorted(_at(start + rng.random() * launch) for _ in range(count))
        first_id = self.tables.reserve(Product, count)
        first_change = self.tables.reserve(PriceChange, count + self.sizes.price_changes)
        first_number = Product.objects.count() + 1
        taken = set(Product.objects.values_list("slug", flat=True))
        products = []
        for index, (sketch, created_at) in enumerate(zip(sketches, launches, strict=True)):
            number = first_number + index
            slug = f"{slugify(sketch.name)}-{number}"
            while slug in taken:
                slug = f"{slugify(sketch.name)}-{number}-{rng.getrandbits(24):06x}"
            taken.add(slug)
            price = demo.price_around(rng, demo.NOUNS[sketch.noun])
            products.append(
                _Product(
                    id=first_id + index,
                    seller_id=rng.choices(seller_ids, cum_weights=seller_weights)[0],
                    sketch=sketch,
                    slug=slug,
                    description=demo.description(sketch, number),
                    first_price=price,
                    first_price_change_id=first_change + index,
                    stock_quantity=demo.stock(rng),
                    created_at=created_at,
                    price=price,
                    updated_at=created_at,
                )
            )
        self.next_price_change_id = first_change + count
        return products

    def _price_changes(
        self, products: Sequence[_Product], cumulative: Sequence[float]
    ) -> list[_PriceChange]:
        """Price changes spread over each product's life, in time order."""
        if not products:
            return []
        rng, now = self.rng, self.now.timestamp()
        timed = []
        for product in rng.choices(products, cum_weights=cumulative, k=self.sizes.price_changes):
            launched = product.created_at.timestamp()
            timed.append((launched + rng.random() * (now - launched), product.id, product))
        timed.sort(key=lambda change: change[:2])
        changes = []
        for offset, (timestamp, _, product) in enumerate(timed):
            price = demo.next_price(rng, product.price)
            changed_at = _at(timestamp)
            changes.append(
                _PriceChange(
                    id=self.next_price_change_id + offset,
                    product=product,
                    price=price,
                    previous_price=product.price,
                    changed_at=changed_at,
                )
            )
            product.price = price
            product.updated_at = changed_at
        return changes

    def _reviewers(self, needed: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """``needed`` reviewer accounts as (id, username as JSON), and those to create
        as (id, username).

        Existing ones are reused; new ones are real users with an unusable
        password (one for all: it can never match anything).
        """
        names = demo.reviewer_names(needed)
        existing = dict(
            get_user_model()
            ._default_manager.filter(username__startswith="reviewer")
            .values_list("username", "pk")
        )
        missing = [name for name in names if name not in existing]
        first = self.tables.reserve(get_user_model(), len(missing))
        created = [(first + offset, name) for offset, name in enumerate(missing)]
        ids = dict(existing) | {name: pk for pk, name in created}
        return [(ids[name], json.dumps(name)) for name in names], created

    def _reviews(
        self,
        products: Sequence[_Product],
        counts: Mapping[int, int],
        reviewers: Sequence[tuple[int, str]],
    ) -> list[_Review]:
        """Reviews spread over each product's life, ids in time order.

        The hot loop of a large seed: draws go straight to ``random()`` and
        ``bisect`` (as ``Random.choices`` does), texts come from a pool per
        kind of product and rating.
        """
        rng, now = self.rng, self.now.timestamp()
        draw = rng.random
        bodies: dict[tuple[str, str, int], list[_Body]] = {}
        planned: list[tuple[float, int, int, int, _Body]] = []
        for index, count in sorted(counts.items()):
            product = products[index]
            sketch = product.sketch
            launched = product.created_at.timestamp()
            span = now - launched
            weights = list(itertools.accumulate(demo.rating_weights(sketch.quality)))
            total = weights[-1]
            pools = [
                bodies.setdefault((sketch.noun, sketch.material, stars), [])
                for stars in demo.RATING_WEIGHTS
            ]
            for author in rng.sample(range(len(reviewers)), count):
                rating = bisect.bisect(weights, draw() * total) + 1
                pool = pools[rating - 1]
                if len(pool) < BODIES_PER_KIND:
                    text = demo.review_body(rng, sketch, rating)
                    pool.append(_Body(text, json.dumps(text)))
                    body = pool[-1]
                else:
                    body = pool[int(draw() * BODIES_PER_KIND)]
                planned.append((launched + draw() * span, product.id, author, rating, body))
        planned.sort(key=operator.itemgetter(0, 1, 2))
        first_id = self.tables.reserve(Review, len(planned))
        return [
            _Review(
                first_id + offset,
                product_id,
                reviewers[author][0],
                reviewers[author][1],
                rating,
                body,
                _at(timestamp).isoformat(),
            )
            for offset, (timestamp, product_id, author, rating, body) in enumerate(planned)
        ]


class _Loader:
    """Writes a plan: rows, then the events of each kind, in dependency order."""

    def __init__(self, tables: "_Tables") -> None:
        self.tables = tables
        self.events = 0

    def load(self, plan: _Plan) -> int:
        _review_added_template(), _price_changed_template()  # refuse before writing
        tables = self.tables
        products = plan.products
        new_rows: dict[type[Model], int] = {
            get_user_model(): len(plan.new_reviewers),
            Seller: len(plan.seller_ids),
            Product: len(products),
            PriceChange: len(products) + len(plan.changes),
            Recommendation: sum(len(related) for _, related in plan.links),
            Review: len(plan.reviews),
            Event: len(plan.seller_ids)
            + len(products)
            + len(plan.links)
            + len(plan.changes)
            + len(plan.reviews)
            + len(plan.off_sale),
        }
        with tables.loading(new_rows):
            self._users(plan.new_reviewers)
            self._sellers(plan)
            self._products(products, plan.changes)
            self._recommendations(plan.links, new_rows[Recommendation])
            self._price_changes(plan.changes)
            self._reviews(plan.reviews)
            self._taken_off_sale(plan.off_sale)
        return self.events

    def _events(self, label: str, events: Iterable[DomainEvent], total: int) -> None:
        self._rendered_events(
            label,
            (
                (e.stream_type, e.stream_id, e.event_type, e.version, json.dumps(e.payload()))
                for e in events
            ),
            total,
        )

    def _rendered_events(
        self, label: str, rows: Iterable[tuple[str, int, str, int, str]], total: int
    ) -> None:
        """Event rows whose payload is JSON text already."""
        self.tables.write(Event, EVENT_FIELDS, rows, label=f"{label} events", total=total)
        self.events += total

    def _users(self, users: Sequence[tuple[int, str]]) -> None:
        password = make_password(None)
        joined = timezone.now() - HISTORY - timedelta(days=30)
        self.tables.write(
            get_user_model(),
            USER_FIELDS,
            ((pk, password, False, name, "", "", "", False, True, joined) for pk, name in users),
            label="reviewers",
            total=len(users),
        )

    def _sellers(self, plan: _Plan) -> None:
        rows = list(zip(plan.seller_ids, plan.seller_names, plan.reputations, strict=True))
        since = timezone.now() - HISTORY - timedelta(days=60)
        self.tables.write(
            Seller,
            ["id", "name", "reputation", "created_at"],
            ((*row, since) for row in rows),
            label="sellers",
            total=len(rows),
        )
        self._events(
            "seller",
            (SellerRegistered(seller_id=pk, name=name, reputation=rep) for pk, name, rep in rows),
            len(rows),
        )

    def _products(self, products: Sequence[_Product], changes: Sequence[_PriceChange]) -> None:
        self.tables.write(
            Product,
            PRODUCT_FIELDS,
            (
                (
                    product.id,
                    product.seller_id,
                    product.sketch.name,
                    product.slug,
                    product.description,
                    product.price,
                    product.stock_quantity,
                    product.is_active,
                    product.created_at,
                    product.updated_at,
                )
                for product in products
            ),
            label="products",
            total=len(products),
        )
        first_prices = (
            (product.first_price_change_id, product.id, product.first_price, product.created_at)
            for product in products
        )
        later = (
            (change.id, change.product.id, change.price, change.changed_at) for change in changes
        )
        self.tables.write(
            PriceChange,
            ["id", "product", "price", "changed_at"],
            itertools.chain(first_prices, later),
            label="price changes",
            total=len(products) + len(changes),
        )
        self._events(
            "product",
            (
                ProductCreated(
                    product_id=product.id,
                    seller_id=product.seller_id,
                    name=product.sketch.name,
                    slug=product.slug,
                    description=product.description,
                    price=product.first_price,
                    stock_quantity=product.stock_quantity,
                    is_active=True,
                    created_at=product.created_at,
                    price_change_id=product.first_price_change_id,
                )
                for product in products
            ),
            len(products),
        )

    def _recommendations(
        self, links: Sequence[tuple[_Product, list[_Product]]], total: int
    ) -> None:
        first = self.tables.reserve(Recommendation, total)
        rows = (
            (product.id, other.id, rank)
            for product, related in links
            for rank, other in enumerate(related)
        )
        self.tables.write(
            Recommendation,
            ["id", "product", "related", "rank"],
            ((first + offset, *row) for offset, row in enumerate(rows)),
            label="recommendations",
            total=total,
        )
        self._events(
            "recommendation",
            (
                RecommendationsChanged(
                    product_id=product.id, related_ids=tuple(other.id for other in related)
                )
                for product, related in links
            ),
            len(links),
        )

    def _price_changes(self, changes: Sequence[_PriceChange]) -> None:
        kind = (PriceChanged.stream_type, PriceChanged.event_type, PriceChanged.version)
        self._rendered_events(
            "price change",
            (
                (kind[0], change.product.id, kind[1], kind[2], _price_changed_json(change))
                for change in changes
            ),
            len(changes),
        )

    def _reviews(self, reviews: Sequence[_Review]) -> None:
        extra_fields, extra_values = _review_fields()
        self.tables.write(
            Review,
            [*REVIEW_FIELDS, *extra_fields],
            (
                (
                    review.id,
                    review.product_id,
                    review.author_id,
                    review.rating,
                    review.body.text,
                    review.created_at,
                    False,
                    *extra_values,
                )
                for review in reviews
            ),
            label="reviews",
            total=len(reviews),
        )
        kind = (ReviewAdded.stream_type, ReviewAdded.event_type, ReviewAdded.version)
        self._rendered_events(
            "review",
            (
                (kind[0], review.id, kind[1], kind[2], _review_added_json(review))
                for review in reviews
            ),
            len(reviews),
        )

    def _taken_off_sale(self, products: Sequence[_Product]) -> None:
        self._events(
            "off-sale",
            (
                ProductDetailsChanged(
                    product_id=product.id,
                    name=product.sketch.name,
                    slug=product.slug,
                    description=product.description,
                    is_active=False,
                )
                for product in products
            ),
            len(products),
        )


# The two kinds of events a large seed has millions of are rendered straight to
# JSON text from a template made of the event class's own fields: the same text
# as ``json.dumps(event.payload())`` (the tests compare them) at a fraction of
# the cost. A field this module cannot fill stops the seed before it writes.


def _template(event: type[DomainEvent], fragments: dict[str, str]) -> str:
    names = [field.name for field in dataclasses.fields(event)]
    unknown = [name for name in names if name not in fragments]
    if unknown:
        raise RuntimeError(
            f"{event.event_type} v{event.version} has fields the bulk seed cannot fill: "
            f"{', '.join(unknown)}; teach catalog.seeding.bulk about them."
        )
    return "{{" + ", ".join(f'"{name}": {fragments[name]}' for name in names) + "}}"


@functools.cache
def _review_added_template() -> str:
    return _template(
        ReviewAdded,
        {
            "review_id": "{r.id}",
            "product_id": "{r.product_id}",
            "author_id": "{r.author_id}",
            "author_name": "{r.author_json}",
            "rating": "{r.rating}",
            "title": '""',  # demo reviews have no title, as the services' default
            "body": "{r.body.json}",
            "created_at": '"{r.created_at}"',
        },
    )


@functools.cache
def _price_changed_template() -> str:
    return _template(
        PriceChanged,
        {
            "product_id": "{c.product.id}",
            "price_change_id": "{c.id}",
            "price": '"{c.price}"',
            "previous_price": '"{c.previous_price}"',
            "changed_at": '"{c.changed_at_iso}"',
        },
    )


def _review_added_json(review: _Review) -> str:
    """``ReviewAdded(...).payload()`` as JSON."""
    return _review_added_template().format(r=review)


def _price_changed_json(change: _PriceChange) -> str:
    """``PriceChanged(...).payload()`` as JSON."""
    return _price_changed_template().format(c=change)


def _review_fields() -> tuple[list[str], tuple[Any, ...]]:
    """The review columns the load writes beyond the planned ones, and their values."""
    names = {field.name for field in Review._meta.concrete_fields}
    extra = ["title"] if "title" in names else []
    return extra, tuple("" for _ in extra)


def _chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _Tables:
    """Reserves ids and writes rows on one connection; a subclass per database."""

    def __init__(self, connection: BaseDatabaseWrapper, progress: Progress) -> None:
        self.connection = connection
        self.progress = progress
        self.written: set[str] = set()

    @staticmethod
    def for_connection(connection: BaseDatabaseWrapper, progress: Progress) -> "_Tables":
        if connection.vendor == "postgresql":
            return _PostgresTables(connection, progress)
        return _InsertTables(connection, progress)

    def reserve(self, model: type[Model], count: int) -> int:
        """The first of ``count`` consecutive unused ids of ``model``'s table."""
        raise NotImplementedError

    @contextlib.contextmanager
    def loading(self, new_rows: Mapping[type[Model], int]) -> Iterator[None]:
        """Around the writes of a load of ``new_rows`` rows per table."""
        yield

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        """Insert ``rows`` (values of ``fields``; JSON fields as JSON text)."""
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh the planner's statistics of the tables just filled."""

    def _fields(self, model: type[Model], names: Sequence[str]) -> list["Field[Any, Any]"]:
        fields = []
        for name in names:
            field = model._meta.get_field(name)
            assert isinstance(field, Field)
            fields.append(field)
        return fields

    def _target(self, model: type[Model], fields: Sequence["Field[Any, Any]"]) -> str:
        quote = self.connection.ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in fields)
        return f"{quote(model._meta.db_table)} ({columns})"


class _PostgresTables(_Tables):
    def reserve(self, model: type[Model], count: int) -> int:
        if not count:
            return 0
        table = model._meta.db_table
        assert model._meta.pk is not None
        with self.connection.cursor() as cursor:
            # Nobody else inserts (and so takes ids) until this transaction ends.
            cursor.execute(
                f"LOCK TABLE {self.connection.ops.quote_name(table)} IN SHARE ROW EXCLUSIVE MODE"
            )
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, model._meta.pk.column])
            sequence = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s)", [sequence])
            first = int(cursor.fetchone()[0])
            if count > 1:
                cursor.execute("SELECT setval(%s, %s)", [sequence, first + count - 1])
        return first

    @contextlib.contextmanager
    def loading(self, new_rows: Mapping[type[Model], int]) -> Iterator[None]:
        """Drop the secondary indexes and constraints of every table that the
        load at least doubles, and add them back after the writes."""
        restore: list[str] = []
        for model, adding in new_rows.items():
            if adding >= REBUILD_FROM_ROWS and self._rows_up_to(model, adding) <= adding:
                restore.extend(self._drop_secondary(model))
        yield
        with self.progress("indexes", len(restore)) as advance, self.connection.cursor() as cursor:
            for statement in restore:
                cursor.execute(statement)
                advance(1)

    def _rows_up_to(self, model: type[Model], limit: int) -> int:
        table = self.connection.ops.quote_name(model._meta.db_table)
        with self.connection.cursor() as cursor:
            sample = f"SELECT FROM {table} LIMIT %s"
            cursor.execute(f"SELECT count(*) FROM ({sample}) AS rows", [limit + 1])  # noqa: S608
            return int(cursor.fetchone()[0])

    def _drop_secondary(self, model: type[Model]) -> list[str]:
        """Drop ``model``'s indexes other than its primary key, and its unique
        and foreign-key constraints; return the statements that restore them.

        Only the table's owner may; anyone else loads with the indexes in place.
        """
        table = model._meta.db_table
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(
                """SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint
                   WHERE conrelid = %s::regclass AND contype IN ('u', 'f')
                   ORDER BY contype DESC, conname""",
                [quote(table)],
            )
            constraints = cursor.fetchall()
            cursor.execute(
                """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
                   WHERE indrelid = %s::regclass AND NOT indisprimary AND NOT EXISTS (
                       SELECT FROM pg_constraint
                       WHERE conrelid = indrelid AND conindid = indexrelid)
                   ORDER BY 1""",
                [quote(table)],
            )
            indexes = cursor.fetchall()
            try:
                with transaction.atomic(using=self.connection.alias):
                    for name, _, _ in constraints:
                        cursor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
                    for name, _ in indexes:
                        cursor.execute(f"DROP INDEX {name}")
            except DatabaseError:
                return []
        return [definition for _, definition in indexes] + [
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}"
            for name, definition, _ in constraints
        ]

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        columns = self._fields(model, fields)
        self.written.add(model._meta.db_table)
        with (
            self.progress(label, total) as advance,
            self.connection.cursor() as cursor,
            cursor.copy(f"COPY {self._target(model, columns)} FROM STDIN") as copy,
        ):
            for chunk in _chunks(rows, PROGRESS_STEP):
                for row in chunk:
                    copy.write_row(row)
                advance(len(chunk))

    def analyze(self) -> None:
        if self.written:
            quote = self.connection.ops.quote_name
            with self.connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {', '.join(sorted(map(quote, self.written)))}")


class _InsertTables(_Tables):
    """Batched ``INSERT``s, values prepared by the model fields as the ORM would."""

    def reserve(self, model: type[Model], count: int) -> int:
        table = self.connection.ops.quote_name(model._meta.db_table)
        assert model._meta.pk is not None
        pk = self.connection.ops.quote_name(str(model._meta.pk.column))
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT max({pk}) FROM {table}")  # noqa: S608
            highest = cursor.fetchone()[0] or 0
            if self.connection.vendor == "sqlite":
                cursor.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = %s", [model._meta.db_table]
                )
                row = cursor.fetchone()
                highest = max(highest, row[0] if row else 0)
        return int(highest) + 1

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        columns = self._fields(model, fields)
        connection = self.connection
        statement = (
            f"INSERT INTO {self._target(model, columns)} "  # noqa: S608 (names from the model)
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        # JSON columns come as JSON text already.
        prepare = [
            _as_is if isinstance(column, JSONField) else column.get_db_prep_save
            for column in columns
        ]
        with self.progress(label, total) as advance, connection.cursor() as cursor:
            for chunk in _chunks(rows, INSERT_BATCH):
                cursor.executemany(
                    statement,
                    [
                        [
                            to_db(value, connection)
                            for to_db, value in zip(prepare, row, strict=True)
                        ]
                        for row in chunk
                    ],
                )
                advance(len(chunk))


def _as_is(value: Any, connection: BaseDatabaseWrapper) -> Any:
    return value
