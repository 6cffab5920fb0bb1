"""Cleaning a command's input: each cleaner returns the value as the command
will use it, or raises ``InvalidInput`` naming the field."""

from decimal import Decimal, InvalidOperation
from typing import Any

from kernel.errors import TEXT_HAS_NUL, InvalidInput

MAX_INT32 = 2_147_483_647
MAX_ID = 2**63 - 1


def clean_text(value: Any, *, field: str, min_length: int, max_length: int, message: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(message, field=field)
    if "\x00" in value:
        raise InvalidInput(TEXT_HAS_NUL, field=field)
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise InvalidInput("Text must be valid Unicode.", field=field)
    if not min_length <= len(value) <= max_length:
        raise InvalidInput(message, field=field)
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


def clean_whole_number(value: Any, *, field: str, minimum: int, maximum: int, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(message, field=field)
    if not minimum <= value <= maximum:
        raise InvalidInput(message, field=field)
    return value


def clean_id(value: Any) -> int | None:
    """An id as given by a client, or None when it cannot name a row."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_ID else None
