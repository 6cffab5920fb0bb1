"""The demo shop drawn in memory, ids included: what the bulk load writes."""

import bisect
import dataclasses
import itertools
import json
import operator
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.utils.text import slugify

from catalog.models import PriceChange, Product, Seller
from catalog.validation import MAX_RECOMMENDATIONS
from demo import sketches as demo
from demo.bulk.tables import Tables
from reviews.models import Review

HISTORY = timedelta(days=365)
# Products launch over the first three quarters of the year of history.
LAUNCH_WINDOW = 0.75
# Distinct review texts kept per (noun, material, stars); more are drawn from these.
BODIES_PER_KIND = 40


@dataclasses.dataclass(slots=True)
class PlannedProduct:
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
class PlannedPriceChange:
    id: int
    product: PlannedProduct
    price: Decimal
    previous_price: Decimal
    changed_at: datetime

    @property
    def changed_at_iso(self) -> str:
        return self.changed_at.isoformat()


class PlannedReview(NamedTuple):
    id: int
    product_id: int
    author_id: int
    author_json: str  # the author's username as a JSON string
    rating: int
    body: "PlannedBody"
    created_at: str  # ISO 8601, as the event says it


class PlannedBody(NamedTuple):
    text: str
    json: str


@dataclasses.dataclass
class Plan:
    seller_ids: list[int]
    seller_names: list[str]
    reputations: list[Decimal]
    new_reviewers: list[tuple[int, str]]
    reviewers: int
    products: list[PlannedProduct]
    links: list[tuple[PlannedProduct, list[PlannedProduct]]]
    changes: list[PlannedPriceChange]
    reviews: list[PlannedReview]
    off_sale: list[PlannedProduct]
    hot: PlannedProduct | None
    hot_reviews: int


def at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class Planner:
    """Draws the whole shop in memory, ids included (reserved from the tables)."""

    def __init__(
        self, sizes: demo.Sizes, rng: random.Random, tables: Tables, now: datetime
    ) -> None:
        self.sizes = sizes
        self.rng = rng
        self.tables = tables
        self.now = now
        self.start = now - HISTORY

    def plan(self) -> Plan:
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
        return Plan(
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

    def _products(self, seller_ids: Sequence[int]) -> list[PlannedProduct]:
        rng, count = self.rng, self.sizes.products
        sketches = [demo.sketch_product(rng) for _ in range(count)]
        seller_weights = list(
            itertools.accumulate(1 / rank for rank in range(1, len(seller_ids) + 1))
        )
        # Launch times first: ids follow them, as they would in a real shop.
        launch = LAUNCH_WINDOW * HISTORY.total_seconds()
        start = self.start.timestamp()
        launches = sorted(at(start + rng.random() * launch) for _ in range(count))
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
                PlannedProduct(
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
        self, products: Sequence[PlannedProduct], cumulative: Sequence[float]
    ) -> list[PlannedPriceChange]:
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
            changed_at = at(timestamp)
            changes.append(
                PlannedPriceChange(
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
        products: Sequence[PlannedProduct],
        counts: Mapping[int, int],
        reviewers: Sequence[tuple[int, str]],
    ) -> list[PlannedReview]:
        """Reviews spread over each product's life, ids in time order.

        The hot loop of a large seed: draws go straight to ``random()`` and
        ``bisect`` (as ``Random.choices`` does), texts come from a pool per
        kind of product and rating.
        """
        rng, now = self.rng, self.now.timestamp()
        draw = rng.random
        bodies: dict[tuple[str, str, int], list[PlannedBody]] = {}
        planned: list[tuple[float, int, int, int, PlannedBody]] = []
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
                    pool.append(PlannedBody(text, json.dumps(text)))
                    body = pool[-1]
                else:
                    body = pool[int(draw() * BODIES_PER_KIND)]
                planned.append((launched + draw() * span, product.id, author, rating, body))
        planned.sort(key=operator.itemgetter(0, 1, 2))
        first_id = self.tables.reserve(Review, len(planned))
        return [
            PlannedReview(
                first_id + offset,
                product_id,
                reviewers[author][0],
                reviewers[author][1],
                rating,
                body,
                at(timestamp).isoformat(),
            )
            for offset, (timestamp, product_id, author, rating, body) in enumerate(planned)
        ]
