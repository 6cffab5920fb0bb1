"""Cleaning the catalog's input; each cleaner raises ``InvalidInput`` with a field."""

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from catalog import errors
from kernel.cleaning import MAX_INT32, clean_decimal, clean_id, clean_text, clean_whole_number
from kernel.errors import InvalidInput

MAX_DESCRIPTION = 20_000
MAX_RECOMMENDATIONS = 20
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,220}$")


def clean_name(value: Any, *, field: str = "name") -> str:
    if isinstance(value, str):
        value = value.strip()
    return clean_text(value, field=field, min_length=1, max_length=200, message=errors.NAME_INVALID)


def clean_description(value: Any) -> str:
    return clean_text(
        value,
        field="description",
        min_length=0,
        max_length=MAX_DESCRIPTION,
        message=errors.DESCRIPTION_INVALID,
    )


def clean_slug(value: Any) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise InvalidInput(errors.SLUG_INVALID, field="slug")
    return value


def clean_price(value: Any) -> Decimal:
    return clean_decimal(
        value,
        field="price",
        message=errors.PRICE_INVALID,
        minimum=Decimal(0),
        maximum=Decimal("99999999.99"),
        strict_min=True,
    )


def clean_reputation(value: Any) -> Decimal:
    return clean_decimal(
        value,
        field="reputation",
        message=errors.REPUTATION_INVALID,
        minimum=Decimal(0),
        maximum=Decimal(5),
        strict_min=False,
    )


def clean_quantity(value: Any) -> int:
    return clean_whole_number(
        value, field="quantity", minimum=0, maximum=MAX_INT32, message=errors.QUANTITY_INVALID
    )


def clean_related_ids(product_id: int, related_ids: Sequence[Any]) -> tuple[int, ...]:
    """Up to MAX_RECOMMENDATIONS distinct ids of products other than ``product_id``.

    Whether those products exist is for the caller to check.
    """
    if isinstance(related_ids, str | bytes) or not isinstance(related_ids, Sequence):
        raise InvalidInput(errors.RECOMMENDATION_INVALID, field="related_ids")
    cleaned = tuple(clean_id(value) for value in related_ids)
    if (
        len(cleaned) > MAX_RECOMMENDATIONS
        or None in cleaned
        or len(set(cleaned)) != len(cleaned)
        or product_id in cleaned
    ):
        raise InvalidInput(errors.RECOMMENDATION_INVALID, field="related_ids")
    return tuple(value for value in cleaned if value is not None)
