"""Domain events and the one signal that carries them.

Every command sends exactly one ``domain_event`` per change, inside its
transaction; the projections app records it in the event table. Events are
past-tense facts with a schema version: a change to a payload's shape bumps
the version and adds an upcaster on the projections side.
"""

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.dispatch import Signal

domain_event = Signal()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class DomainEvent:
    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    stream_type: ClassVar[str]

    @property
    def stream_id(self) -> int:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        return {
            field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)
        }


def send_event(event: DomainEvent) -> None:
    """Send ``event``; the caller's transaction on ``default`` must be open."""
    domain_event.send(sender=type(event), event=event)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerEvent(DomainEvent):
    stream_type: ClassVar[str] = "seller"
    seller_id: int

    @property
    def stream_id(self) -> int:
        return self.seller_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductEvent(DomainEvent):
    stream_type: ClassVar[str] = "product"
    product_id: int

    @property
    def stream_id(self) -> int:
        return self.product_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerRegistered(SellerEvent):
    event_type: ClassVar[str] = "SellerRegistered"
    name: str
    reputation: Decimal


@dataclasses.dataclass(frozen=True, kw_only=True)
class SellerReputationChanged(SellerEvent):
    event_type: ClassVar[str] = "SellerReputationChanged"
    reputation: Decimal
    previous_reputation: Decimal


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductCreated(ProductEvent):
    event_type: ClassVar[str] = "ProductCreated"
    seller_id: int
    name: str
    slug: str
    description: str
    price: Decimal
    stock_quantity: int
    is_active: bool
    created_at: datetime
    price_change_id: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProductDetailsChanged(ProductEvent):
    event_type: ClassVar[str] = "ProductDetailsChanged"
    name: str
    slug: str
    description: str
    is_active: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class PriceChanged(ProductEvent):
    event_type: ClassVar[str] = "PriceChanged"
    price_change_id: int
    price: Decimal
    previous_price: Decimal
    changed_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class StockChanged(ProductEvent):
    event_type: ClassVar[str] = "StockChanged"
    quantity: int
    previous_quantity: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecommendationsChanged(ProductEvent):
    event_type: ClassVar[str] = "RecommendationsChanged"
    related_ids: tuple[int, ...]
