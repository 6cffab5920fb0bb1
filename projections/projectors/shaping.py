"""How read-model fields are shaped, shared by the projectors and by the
truth that ``verify_projections`` computes from the write model."""

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from projections.models import StockStatus

RECENT_REVIEWS = 5
PRICE_HISTORY = 30
CENT = Decimal("0.01")
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


def stock_status(quantity: int) -> str:
    if quantity <= 0:
        return StockStatus.OUT_OF_STOCK
    if quantity <= settings.LOW_STOCK_THRESHOLD:
        return StockStatus.LOW_STOCK
    return StockStatus.IN_STOCK


def average(rating_sum: int, count: int) -> Decimal | None:
    """The mean to the cent, rounded half up."""
    if count <= 0:
        return None
    if rating_sum < 0:
        return (Decimal(rating_sum) / Decimal(count)).quantize(CENT, rounding=ROUND_HALF_UP)
    # The same in integers (projectors call this for every review): cents,
    # rounded half up, are floor((100 * sum / count) + 1/2).
    cents = (200 * rating_sum + count) // (2 * count)
    return Decimal(cents).scaleb(-2)


def money(value: Any) -> str:
    if not isinstance(value, Decimal):
        value = Decimal(str(value))
    return str(value.quantize(CENT))


def timestamp(value: datetime | str) -> str:
    """One spelling of a moment, so stored lists compare and sort exactly."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value  # already spelled so (events carry moments this way)
    moment = parse_datetime(value) if isinstance(value, str) else value
    if moment is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def review_entry(
    *,
    review_id: int,
    author: str,
    rating: int,
    title: str,
    body: str,
    created_at: datetime | str,
    edited_at: datetime | str | None,
) -> dict[str, Any]:
    return {
        "id": review_id,
        "author": author,
        "rating": rating,
        "title": title,
        "body": body,
        "created_at": timestamp(created_at),
        "edited_at": timestamp(edited_at) if edited_at else None,
    }


def newest_reviews(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(entries, key=_review_order, reverse=True)
    return ordered[:RECENT_REVIEWS]


def with_review(recent: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``newest_reviews`` of ``recent`` (already newest first) and one more."""
    if not recent or _review_order(entry) > _review_order(recent[0]):
        return [entry, *recent[: RECENT_REVIEWS - 1]]  # the usual case: it is the newest
    return newest_reviews([entry, *recent])


def _review_order(entry: dict[str, Any]) -> tuple[str, int]:
    return entry["created_at"], entry["id"]


def price_entry(*, change_id: int, price: Any, changed_at: datetime | str) -> dict[str, Any]:
    return {"id": change_id, "price": money(price), "changed_at": timestamp(changed_at)}


def newest_prices(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(entries, key=_price_order, reverse=True)
    return ordered[:PRICE_HISTORY]


def with_price(history: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``newest_prices`` of ``history`` (already newest first) and one more."""
    if not history or _price_order(entry) > _price_order(history[0]):
        return [entry, *history[: PRICE_HISTORY - 1]]  # the usual case: it is the newest
    return newest_prices([entry, *history])


def _price_order(entry: dict[str, Any]) -> tuple[str, int]:
    return entry["changed_at"], entry["id"]


def related_entry(
    *, product_id: int, name: str, price: Any, rating_sum: int, review_count: int
) -> dict[str, Any]:
    rating = average(rating_sum, review_count)
    return {
        "id": product_id,
        "name": name,
        "price": money(price),
        "avg_rating": str(rating) if rating is not None else None,
    }


def empty_histogram() -> list[int]:
    return [0, 0, 0, 0, 0]
