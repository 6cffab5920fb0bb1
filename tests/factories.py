"""factory-boy factories that create write-side data through the services, so
every row a test makes has its event, exactly as in production.

``SellerFactory.create()``, ``ProductFactory.create(price=Decimal("5.00"))``,
``ReviewFactory.create(product=p, author=u, rating=5)``,
``UserFactory.create(is_staff=True)``: ``.create()`` is typed for mypy. The
lower-case helpers at the bottom are shorthands kept for existing tests.
"""

from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User

from catalog import services as catalog_services
from catalog.models import Product, Seller
from reviews import services as review_services
from reviews.models import Review

USER_PASSWORD = "pw-123-secret"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = False

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> User:
        return model_class._default_manager.create_user(*args, password=USER_PASSWORD, **kwargs)


class SellerFactory(factory.django.DjangoModelFactory[Seller]):
    class Meta:
        model = Seller

    name = factory.Sequence(lambda n: f"Seller {n}")
    reputation = Decimal("4.00")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Seller:
        return catalog_services.seller_register(**kwargs)


class ProductFactory(factory.django.DjangoModelFactory[Product]):
    class Meta:
        model = Product

    seller = factory.SubFactory(SellerFactory)
    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    description = "A fine product."
    price = Decimal("19.99")
    stock_quantity = 10
    is_active = True

    @classmethod
    def _create(cls, model_class: Any, *args: Any, seller: Seller, **kwargs: Any) -> Product:
        return catalog_services.product_create(seller_id=seller.pk, **kwargs)


class ReviewFactory(factory.django.DjangoModelFactory[Review]):
    class Meta:
        model = Review

    product = factory.SubFactory(ProductFactory)
    author = factory.SubFactory(UserFactory)
    rating = 4
    body = "Solid, works as described."

    @classmethod
    def _create(cls, model_class: Any, *args: Any, product: Product, **kwargs: Any) -> Review:
        return review_services.review_add(product_id=product.pk, **kwargs)


def seller(*, name: str | None = None, reputation: str = "4.00") -> Seller:
    overrides = {"name": name} if name is not None else {}
    return SellerFactory.create(reputation=Decimal(reputation), **overrides)


def product(
    *,
    seller_obj: Seller | None = None,
    name: str | None = None,
    price: str = "19.99",
    stock: int = 10,
) -> Product:
    overrides: dict[str, Any] = {"price": Decimal(price), "stock_quantity": stock}
    if seller_obj is not None:
        overrides["seller"] = seller_obj
    if name is not None:
        overrides["name"] = name
    return ProductFactory.create(**overrides)


def user(*, username: str | None = None, is_staff: bool = False) -> User:
    overrides = {"username": username} if username is not None else {}
    return UserFactory.create(is_staff=is_staff, **overrides)


def grant(user: Any, *permissions: str) -> None:
    """Give ``user`` permissions named as ``has_perm`` takes them: ``"catalog.change_product"``."""
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def catalog_staff(*, username: str | None = None) -> User:
    """A staff member who may change products (price and stock), not a superuser."""
    member = user(username=username, is_staff=True)
    grant(member, "catalog.change_product")
    return member


def review(
    *, product_obj: Product, author: Any = None, rating: int = 4, body: str = "Solid, works."
) -> Review:
    overrides = {"author": author} if author is not None else {}
    return ReviewFactory.create(product=product_obj, rating=rating, body=body, **overrides)
