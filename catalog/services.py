"""Catalog commands.

Every command validates, then runs in one ``command_transaction`` on
``default``: its first statement announces it as an event writer (the log's
readers wait for such transactions only), then it takes the lock of the
aggregate it changes (``lock_stream``: commands on one aggregate run one at a
time) and locks its row (``select_for_update``), its first write. That order
is on purpose: the first write gives the transaction its id, so commands on
one aggregate get ids in the order they ran, and the event log's
``(transaction id, position)`` order keeps each aggregate's events in the
order they happened (see ``catalog.events.lock_stream`` for why the row lock
alone does not promise it).

The row lock is ``FOR NO KEY UPDATE`` on PostgreSQL: it excludes other commands
on the aggregate, but not rows elsewhere that merely reference it (their
foreign-key checks take ``FOR KEY SHARE``). With a plain ``FOR UPDATE``, two
transactions that each locked a product and then linked it to the other's
(recommendations, say, saved from the admin) deadlocked.
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.text import slugify

from catalog import errors
from catalog.events import (
    PriceChanged,
    ProductCreated,
    ProductDetailsChanged,
    ProductEvent,
    RecommendationsChanged,
    SellerEvent,
    SellerRegistered,
    SellerReputationChanged,
    StockChanged,
)
from catalog.models import PriceChange, Product, Recommendation, Seller
from catalog.validation import (
    clean_description,
    clean_name,
    clean_price,
    clean_quantity,
    clean_related_ids,
    clean_reputation,
    clean_slug,
)
from eventstore.events import send_event
from eventstore.recording import command_transaction
from kernel.aggregates import conflict_on_integrity_error, locked
from kernel.errors import PRODUCT_NOT_FOUND, Conflict, InvalidInput
from kernel.metrics import measured_command


def _locked_seller(seller_id: Any) -> Seller:
    return locked(
        Seller,
        seller_id,
        stream_type=SellerEvent.stream_type,
        not_found=errors.SELLER_NOT_FOUND,
        field="seller",
    )


def _locked_product(product_id: Any) -> Product:
    return locked(
        Product,
        product_id,
        stream_type=ProductEvent.stream_type,
        not_found=PRODUCT_NOT_FOUND,
        field="product",
    )


@measured_command
def seller_register(*, name: str, reputation: Decimal | str = Decimal("0.00")) -> Seller:
    name = clean_name(name)
    reputation = clean_reputation(reputation)
    with command_transaction():
        seller = Seller.objects.create(name=name, reputation=reputation)
        send_event(SellerRegistered(seller_id=seller.pk, name=name, reputation=reputation))
    return seller


@measured_command
def seller_change_reputation(*, seller_id: int, reputation: Decimal | str) -> Seller:
    reputation = clean_reputation(reputation)
    with command_transaction():
        seller = _locked_seller(seller_id)
        previous = seller.reputation
        if previous == reputation:
            return seller
        seller.reputation = reputation
        seller.save(update_fields=["reputation"])
        send_event(
            SellerReputationChanged(
                seller_id=seller.pk, reputation=reputation, previous_reputation=previous
            )
        )
    return seller


@measured_command
def product_create(
    *,
    seller_id: int,
    name: str,
    price: Decimal | str,
    description: str = "",
    slug: str | None = None,
    stock_quantity: int = 0,
    is_active: bool = True,
) -> Product:
    name = clean_name(name)
    price = clean_price(price)
    description = clean_description(description)
    stock_quantity = clean_quantity(stock_quantity)
    slug = clean_slug(slug if slug is not None else (slugify(name)[:200] or "product"))
    with command_transaction():
        seller = _locked_seller(seller_id)
        if Product.objects.filter(slug=slug).exists():
            raise Conflict(errors.SLUG_TAKEN, field="slug")
        now = timezone.now()
        with conflict_on_integrity_error(errors.SLUG_TAKEN, field="slug"):
            product = Product.objects.create(
                seller=seller,
                name=name,
                slug=slug,
                description=description,
                price=price,
                stock_quantity=stock_quantity,
                is_active=bool(is_active),
                created_at=now,
                updated_at=now,
            )
        first_price = PriceChange.objects.create(product=product, price=price, changed_at=now)
        send_event(
            ProductCreated(
                product_id=product.pk,
                seller_id=seller.pk,
                name=name,
                slug=slug,
                description=description,
                price=price,
                stock_quantity=stock_quantity,
                is_active=product.is_active,
                created_at=now,
                price_change_id=first_price.pk,
            )
        )
    return product


@measured_command
def product_change_details(
    *,
    product_id: int,
    name: str | None = None,
    slug: str | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> Product:
    new_name = clean_name(name) if name is not None else None
    new_slug = clean_slug(slug) if slug is not None else None
    new_description = clean_description(description) if description is not None else None
    with command_transaction():
        product = _locked_product(product_id)
        before = (product.name, product.slug, product.description, product.is_active)
        product.name = new_name if new_name is not None else product.name
        product.slug = new_slug if new_slug is not None else product.slug
        product.description = (
            new_description if new_description is not None else product.description
        )
        product.is_active = bool(is_active) if is_active is not None else product.is_active
        if before == (product.name, product.slug, product.description, product.is_active):
            return product
        if Product.objects.filter(slug=product.slug).exclude(pk=product.pk).exists():
            raise Conflict(errors.SLUG_TAKEN, field="slug")
        product.updated_at = timezone.now()
        product.save(update_fields=["name", "slug", "description", "is_active", "updated_at"])
        send_event(
            ProductDetailsChanged(
                product_id=product.pk,
                name=product.name,
                slug=product.slug,
                description=product.description,
                is_active=product.is_active,
            )
        )
    return product


@measured_command
def product_change_price(*, product_id: int, price: Decimal | str) -> Product:
    price = clean_price(price)
    with command_transaction():
        product = _locked_product(product_id)
        previous = product.price
        if previous == price:
            return product
        now = timezone.now()
        product.price = price
        product.updated_at = now
        product.save(update_fields=["price", "updated_at"])
        change = PriceChange.objects.create(product=product, price=price, changed_at=now)
        send_event(
            PriceChanged(
                product_id=product.pk,
                price_change_id=change.pk,
                price=price,
                previous_price=previous,
                changed_at=now,
            )
        )
    return product


@measured_command
def product_change_stock(*, product_id: int, quantity: int) -> Product:
    quantity = clean_quantity(quantity)
    with command_transaction():
        product = _locked_product(product_id)
        previous = product.stock_quantity
        if previous == quantity:
            return product
        product.stock_quantity = quantity
        product.updated_at = timezone.now()
        product.save(update_fields=["stock_quantity", "updated_at"])
        send_event(
            StockChanged(product_id=product.pk, quantity=quantity, previous_quantity=previous)
        )
    return product


@measured_command
def product_set_recommendations(*, product_id: int, related_ids: Sequence[int]) -> Product:
    """Replace the product's "also bought" list with ``related_ids``, in that order."""
    with command_transaction():
        product = _locked_product(product_id)
        wanted = clean_related_ids(product.pk, related_ids)
        current = tuple(
            Recommendation.objects.filter(product=product)
            .order_by("rank")
            .values_list("related_id", flat=True)
        )
        if current == wanted:
            return product
        if Product.objects.filter(pk__in=wanted).count() != len(wanted):
            raise InvalidInput(errors.RECOMMENDATION_INVALID, field="related_ids")
        Recommendation.objects.filter(product=product).delete()
        Recommendation.objects.bulk_create(
            Recommendation(product=product, related_id=related_id, rank=rank)
            for rank, related_id in enumerate(wanted)
        )
        send_event(RecommendationsChanged(product_id=product.pk, related_ids=wanted))
    return product
