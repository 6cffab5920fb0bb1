"""Checks shared by the services. Each raises ``InvalidInput`` with a field."""

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from catalog import errors
from catalog.errors import InvalidInput

MAX_INT32 = 2_147_483_647
MAX_DESCRIPTION = 20_000
MAX_RECOMMENDATIONS = 20
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,220}$")


def clean_text(value: Any, *, field: str, min_length: int, max_length: int, message: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(message, field=field)
    if "\x00" in value:
        raise InvalidInput(errors.TEXT_HAS_NUL, field=field)
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise InvalidInput("Text must be valid Unicode.", field=field)
    if not min_length <= len(value) <= max_length:
        raise InvalidInput(message, field=field)
    return value


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
        message="Description must be at most 20,000 characters.",
    )


def clean_slug(value: Any) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise InvalidInput(errors.SLUG_INVALID, field="slug")
    return value


def clean_decimal(
    value: Any, *, field: str, message: str, minimum: Decimal, maximum: Decimal, strict_min: bool
) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidInput(message, field=field)
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise InvalidInput(message, field=field) from None
    if not amount.is_finite():
        raise InvalidInput(message, field=field)
    too_low = amount <= minimum if strict_min else amount < minimum
    if too_low or amount > maximum:
        raise InvalidInput(message, field=field)
    if amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput(message, field=field)
    return amount.quantize(Decimal("0.01"))


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


def clean_whole_number(value: Any, *, field: str, minimum: int, maximum: int, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(message, field=field)
    if not minimum <= value <= maximum:
        raise InvalidInput(message, field=field)
    return value


def clean_quantity(value: Any) -> int:
    return clean_whole_number(
        value, field="quantity", minimum=0, maximum=MAX_INT32, message=errors.QUANTITY_INVALID
    )


def clean_id(value: Any) -> int | None:
    """An id as given by a client, or None when it cannot name a row."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= 2**63 - 1 else None


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
