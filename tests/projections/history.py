"""Random command histories, run through the real services."""

import random
import threading
import time
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connections

from catalog import services as catalog
from catalog.models import Product, Seller
from eventstore.models import Event
from eventstore.recording import command_transaction
from kernel.errors import DomainError
from projections.expected import (
    PRODUCT_FIELDS,
    SELLER_FIELDS,
    actual_products,
    actual_sellers,
    drift,
    expected_products,
    expected_sellers,
)
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    SellerFacts,
)
from projections.rebuild import SWAPPED_MODELS
from reviews import services as reviews
from reviews.models import Review


def wipe_read_side() -> None:
    for model in SWAPPED_MODELS:
        model.objects.all().delete()


def seed_catalog(rng: random.Random, *, sellers: int = 3, products: int = 12) -> None:
    for n in range(sellers):
        catalog.seller_register(name=f"Seller {n}", reputation=Decimal(rng.randint(0, 500)) / 100)
    seller_ids = list(Seller.objects.values_list("pk", flat=True))
    for n in range(products):
        catalog.product_create(
            seller_id=rng.choice(seller_ids),
            name=f"Product {n}",
            slug=f"product-{n}-{rng.randrange(10**9)}",
            price=Decimal(rng.randint(100, 99999)) / 100,
            stock_quantity=rng.randint(0, 30),
        )


def random_command(rng: random.Random, users: list) -> None:
    product_ids = list(Product.objects.values_list("pk", flat=True))
    seller_ids = list(Seller.objects.values_list("pk", flat=True))
    roll = rng.random()
    try:
        if roll < 0.40:
            reviews.review_add(
                product_id=rng.choice(product_ids),
                author=rng.choice(users),
                rating=rng.randint(1, 5),
                body=f"Review text {rng.randrange(10**6)}",
            )
        elif roll < 0.50:
            review = Review.objects.filter(is_hidden=False).order_by("?").first()
            if review:
                reviews.review_edit(
                    review_id=review.pk,
                    author=review.author,
                    rating=rng.randint(1, 5),
                    body=f"Edited text {rng.randrange(10**6)}",
                )
        elif roll < 0.56:
            review = Review.objects.order_by("?").first()
            if review:
                reviews.review_remove(review_id=review.pk, author=review.author)
        elif roll < 0.62:
            review = Review.objects.filter(is_hidden=False).order_by("?").first()
            staff = next(user for user in users if user.is_staff)
            if review:
                reviews.review_hide(review_id=review.pk, moderator=staff)
        elif roll < 0.72:
            catalog.product_change_price(
                product_id=rng.choice(product_ids), price=Decimal(rng.randint(100, 99999)) / 100
            )
        elif roll < 0.80:
            catalog.product_change_stock(
                product_id=rng.choice(product_ids), quantity=rng.randint(0, 12)
            )
        elif roll < 0.88:
            product_id = rng.choice(product_ids)
            others = [pk for pk in product_ids if pk != product_id]
            catalog.product_set_recommendations(
                product_id=product_id, related_ids=rng.sample(others, rng.randint(0, 4))
            )
        elif roll < 0.93:
            catalog.seller_change_reputation(
                seller_id=rng.choice(seller_ids), reputation=Decimal(rng.randint(0, 500)) / 100
            )
        elif roll < 0.97:
            catalog.product_change_details(
                product_id=rng.choice(product_ids),
                name=f"Renamed {rng.randrange(10**6)}",
                is_active=rng.random() < 0.85,
            )
        else:
            catalog.product_create(
                seller_id=rng.choice(seller_ids),
                name=f"Late product {rng.randrange(10**6)}",
                slug=f"late-{rng.randrange(10**9)}",
                price=Decimal(rng.randint(100, 9999)) / 100,
            )
    except DomainError:
        pass  # a refused command (a duplicate review, a hidden review) is part of life


def add_version_one_review(product_id: int, author, rating: int, body: str, **fields) -> Review:
    """A review as it was written before ReviewAdded had a title: its event
    stored as version 1, as it was then (``fields``: more of the review's)."""
    with command_transaction():
        review = Review.objects.create(
            product_id=product_id, author=author, rating=rating, body=body, **fields
        )
        Event.objects.create(
            stream_type="review",
            stream_id=review.pk,
            event_type="ReviewAdded",
            version=1,
            payload={
                "review_id": review.pk,
                "product_id": product_id,
                "author_id": author.pk,
                "author_name": author.username,
                "rating": rating,
                "body": body,
                "created_at": review.created_at.isoformat(),
            },
        )
    return review


def make_users(count: int = 8) -> list:
    model = get_user_model()
    users = [model.objects.create_user(username=f"shopper{n}") for n in range(count)]
    users.append(model.objects.create_user(username="moderator", is_staff=True))
    return users


def _explain(expected: dict, actual: dict, found: dict) -> str:
    lines = []
    for pk, fields in list(found.items())[:3]:
        for field in fields[:3]:
            want = expected.get(pk, {}).get(field, "<missing row>")
            got = actual.get(pk, {}).get(field, "<missing row>")
            lines.append(f"  {pk}.{field}: expected {want!r}, projected {got!r}")
    return "\n".join(lines)


def assert_exact() -> None:
    for expected, actual, fields in (
        (expected_products(), actual_products(), PRODUCT_FIELDS),
        (expected_sellers(), actual_sellers(), SELLER_FIELDS),
    ):
        found = drift(expected, actual, fields)
        assert found == {}, f"rows drifted: {found}\n{_explain(expected, actual, found)}"


def snapshot() -> tuple[dict, dict]:
    return actual_products(), actual_sellers()


class Writer(threading.Thread):
    """Runs random commands until stopped; every command must succeed or be refused."""

    def __init__(self, seed: int, users: list, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.users = users
        self.pause = pause
        self.stop = threading.Event()
        self.commands = 0
        self.errors: list[BaseException] = []
        self.slowest = 0.0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                random_command(self.rng, self.users)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.commands += 1
                time.sleep(self.pause)
        except BaseException as error:  # surfaced by the test
            self.errors.append(error)
        finally:
            connections.close_all()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        assert not self.errors, self.errors


def assert_layout(count: int) -> None:
    """Every store says ``count`` partitions, and each row is its owner's."""
    rows = Checkpoint.objects.filter(projector="products")
    assert sorted(rows.values_list("partition", flat=True)) == list(range(count))
    assert set(rows.values_list("partitions", flat=True)) == {count}
    for pk, partition in ProductFacts.objects.filter(projector="products").values_list(
        "product_id", "partition"
    ):
        assert partition == pk % count
    for pk, partition in ProductReadModel.objects.values_list("product_id", "partition"):
        assert partition == pk % count
    for source, partition in RelatedLink.objects.values_list("source_id", "partition"):
        assert partition == source % count
    sellers = SellerFacts.objects.filter(projector="products")
    per_partition = {
        partition: set(sellers.filter(partition=partition).values_list("seller_id", "name"))
        for partition in range(count)
    }
    assert set(sellers.values_list("partition", flat=True)) <= set(range(count))
    assert len({frozenset(kept) for kept in per_partition.values()}) == 1  # the same copies
