"""How read-model fields are shaped, shared by the projectors and by the
truth that ``verify_projections`` computes from the write model."""

import re
from collections.abc import Callable
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
    return _newest(entries, _review_order, RECENT_REVIEWS)


def with_review(recent: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``newest_reviews`` of ``recent`` (already newest first) and one more."""
    return _with_newest(recent, entry, _review_order, RECENT_REVIEWS)


def _review_order(entry: dict[str, Any]) -> tuple[str, int]:
    return entry["created_at"], entry["id"]


def price_entry(*, change_id: int, price: Any, changed_at: datetime | str) -> dict[str, Any]:
    return {"id": change_id, "price": money(price), "changed_at": timestamp(changed_at)}


def newest_prices(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _newest(entries, _price_order, PRICE_HISTORY)


def with_price(history: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``newest_prices`` of ``history`` (already newest first) and one more."""
    return _with_newest(history, entry, _price_order, PRICE_HISTORY)


def _price_order(entry: dict[str, Any]) -> tuple[str, int]:
    return entry["changed_at"], entry["id"]


Order = Callable[[dict[str, Any]], tuple[str, int]]


def _newest(entries: list[dict[str, Any]], order: Order, limit: int) -> list[dict[str, Any]]:
    return sorted(entries, key=order, reverse=True)[:limit]


def _with_newest(
    newest_first: list[dict[str, Any]], entry: dict[str, Any], order: Order, limit: int
) -> list[dict[str, Any]]:
    if not newest_first or order(entry) > order(newest_first[0]):
        return [entry, *newest_first[: limit - 1]]  # the usual case: it is the newest
    return _newest([entry, *newest_first], order, limit)


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
