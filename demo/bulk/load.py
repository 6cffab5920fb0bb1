"""Writing a plan: the rows, then the events each command would have recorded."""

import dataclasses
import functools
import itertools
import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db.models import Model
from django.utils import timezone

from catalog.events import (
    PriceChanged,
    ProductCreated,
    ProductDetailsChanged,
    RecommendationsChanged,
    SellerRegistered,
)
from catalog.models import PriceChange, Product, Recommendation, Seller
from demo.bulk.plan import HISTORY, Plan, PlannedPriceChange, PlannedProduct, PlannedReview
from demo.bulk.tables import EVENT_FIELDS, PRODUCT_FIELDS, REVIEW_FIELDS, USER_FIELDS, Tables
from eventstore.events import DomainEvent
from eventstore.models import Event
from reviews.events import ReviewAdded
from reviews.models import Review


class Loader:
    """Writes a plan: rows, then the events of each kind, in dependency order."""

    def __init__(self, tables: "Tables") -> None:
        self.tables = tables
        self.events = 0

    def load(self, plan: Plan) -> int:
        review_added_template(), price_changed_template()  # refuse before writing
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

    def _sellers(self, plan: Plan) -> None:
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

    def _products(
        self, products: Sequence[PlannedProduct], changes: Sequence[PlannedPriceChange]
    ) -> None:
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
        self, links: Sequence[tuple[PlannedProduct, list[PlannedProduct]]], total: int
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

    def _price_changes(self, changes: Sequence[PlannedPriceChange]) -> None:
        kind = (PriceChanged.stream_type, PriceChanged.event_type, PriceChanged.version)
        self._rendered_events(
            "price change",
            (
                (kind[0], change.product.id, kind[1], kind[2], _price_changed_json(change))
                for change in changes
            ),
            len(changes),
        )

    def _reviews(self, reviews: Sequence[PlannedReview]) -> None:
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

    def _taken_off_sale(self, products: Sequence[PlannedProduct]) -> None:
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
            f"{', '.join(unknown)}; teach demo.bulk about them."
        )
    return "{{" + ", ".join(f'"{name}": {fragments[name]}' for name in names) + "}}"


@functools.cache
def review_added_template() -> str:
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
def price_changed_template() -> str:
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


def _review_added_json(review: PlannedReview) -> str:
    """``ReviewAdded(...).payload()`` as JSON."""
    return review_added_template().format(r=review)


def _price_changed_json(change: PlannedPriceChange) -> str:
    """``PriceChanged(...).payload()`` as JSON."""
    return price_changed_template().format(c=change)


def _review_fields() -> tuple[list[str], tuple[Any, ...]]:
    """The review columns the load writes beyond the planned ones, and their values."""
    names = {field.name for field in Review._meta.concrete_fields}
    extra = ["title"] if "title" in names else []
    return extra, tuple("" for _ in extra)
