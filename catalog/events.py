"""The catalog's events: sellers and products. Past tense, versioned."""

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from eventstore.events import DomainEvent


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
