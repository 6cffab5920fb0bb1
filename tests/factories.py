"""Factories that build write-side data through the services, so every row has its event."""

import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model

from catalog import services as catalog_services
from catalog.models import Product, Seller
from reviews import services as review_services
from reviews.models import Review

_counter = itertools.count(1)


def seller(*, name: str | None = None, reputation: str = "4.00") -> Seller:
    return catalog_services.seller_register(
        name=name or f"Seller {next(_counter)}", reputation=Decimal(reputation)
    )


def product(
    *,
    seller_obj: Seller | None = None,
    name: str | None = None,
    price: str = "19.99",
    stock: int = 10,
) -> Product:
    owner = seller_obj or seller()
    n = next(_counter)
    return catalog_services.product_create(
        seller_id=owner.pk,
        name=name or f"Product {n}",
        slug=f"product-{n}",
        description="A fine product.",
        price=Decimal(price),
        stock_quantity=stock,
    )


def user(*, username: str | None = None, is_staff: bool = False):
    return get_user_model().objects.create_user(
        username=username or f"user{next(_counter)}", password="pw-123-secret", is_staff=is_staff
    )


def review(*, product_obj: Product, author=None, rating: int = 4, body: str = "Solid, works.") -> Review:
    return review_services.review_add(
        product_id=product_obj.pk, author=author or user(), rating=rating, body=body
    )
