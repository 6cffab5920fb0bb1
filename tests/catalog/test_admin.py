"""Catalog management in the admin: every save is a command with its event."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from catalog import services
from catalog.models import PriceChange, Product, Recommendation, Seller
from kernel.errors import Conflict
from tests.factories import ProductFactory, SellerFactory
from tests.support import events_after, last_position, nothing_written

pytestmark = pytest.mark.django_db


def inline_management(prefix, *, total=0, initial=0):
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def recommendation_rows(product, related_by_rank, *, existing=()):
    """Inline rows: the product's current recommendations first, then new ones."""
    data = inline_management(
        "recommendations", total=len(existing) + len(related_by_rank), initial=len(existing)
    )
    rows = [(rec.pk, rec.related_id, rec.rank) for rec in existing]
    rows += [("", related.pk, rank) for rank, related in related_by_rank]
    for index, (pk, related_id, rank) in enumerate(rows):
        data[f"recommendations-{index}-id"] = str(pk)
        data[f"recommendations-{index}-product"] = str(product.pk) if product else ""
        data[f"recommendations-{index}-related"] = str(related_id)
        data[f"recommendations-{index}-rank"] = str(rank)
    return data


def product_change_data(product, **changes):
    data = {
        "name": product.name,
        "slug": product.slug,
        "description": product.description,
        "price": str(product.price),
        "stock_quantity": str(product.stock_quantity),
        **inline_management("recommendations"),
        **inline_management("price_changes"),
    }
    if product.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return data


def event_types_after(position):
    return [event.event_type for event in events_after(position)]


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_adding_a_seller_registers_it(admin_client):
    start = last_position()

    response = admin_client.post(
        reverse("admin:catalog_seller_add"), {"name": "Acme", "reputation": "4.20"}
    )

    assert response.status_code == 302
    seller = Seller.objects.get(name="Acme")
    assert seller.reputation == Decimal("4.20")
    assert event_types_after(start) == ["SellerRegistered"]


def test_changing_a_sellers_reputation_records_it_and_leaves_the_name(admin_client):
    seller = SellerFactory.create(name="Acme", reputation=Decimal("4.00"))
    start = last_position()

    response = admin_client.post(
        reverse("admin:catalog_seller_change", args=[seller.pk]),
        {"name": "Renamed", "reputation": "2.50"},
    )

    assert response.status_code == 302
    seller.refresh_from_db()
    assert (seller.name, seller.reputation) == ("Acme", Decimal("2.50"))
    assert event_types_after(start) == ["SellerReputationChanged"]


@pytest.mark.parametrize("reputation", ["5.01", "-1", "4.555", "NaN", ""])
def test_a_bad_reputation_is_a_form_error_and_writes_nothing(admin_client, reputation):
    with nothing_written():
        response = admin_client.post(
            reverse("admin:catalog_seller_add"), {"name": "Acme", "reputation": reputation}
        )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["reputation"]


def test_adding_a_product_creates_it_with_its_recommendations(admin_client):
    seller = SellerFactory.create()
    first, second = ProductFactory.create(), ProductFactory.create()
    start = last_position()
    data = {
        "seller": str(seller.pk),
        "name": "Oak Chair",
        "slug": "oak-chair",
        "description": "Sturdy.",
        "price": "120.00",
        "stock_quantity": "4",
        "is_active": "on",
        **recommendation_rows(None, [(2, first), (1, second)]),
    }

    response = admin_client.post(reverse("admin:catalog_product_add"), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    product = Product.objects.get(slug="oak-chair")
    assert (product.seller, product.price, product.stock_quantity) == (
        seller,
        Decimal("120.00"),
        4,
    )
    assert list(
        Recommendation.objects.filter(product=product).values_list("related_id", flat=True)
    ) == [second.pk, first.pk]
    assert event_types_after(start) == ["ProductCreated", "RecommendationsChanged"]


def test_changing_details_price_and_stock_records_one_event_for_each(admin_client):
    product = ProductFactory.create(price=Decimal("19.99"), stock_quantity=10)
    start = last_position()

    response = admin_client.post(
        reverse("admin:catalog_product_change", args=[product.pk]),
        product_change_data(product, name="Renamed", price="17.50", stock_quantity="0"),
    )

    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.name, product.price, product.stock_quantity) == ("Renamed", Decimal("17.50"), 0)
    assert PriceChange.objects.filter(product=product).count() == 2
    assert event_types_after(start) == ["ProductDetailsChanged", "PriceChanged", "StockChanged"]


def test_saving_an_unchanged_product_records_nothing(admin_client):
    product = ProductFactory.create()

    with nothing_written():
        response = admin_client.post(
            reverse("admin:catalog_product_change", args=[product.pk]),
            product_change_data(product),
        )

    assert response.status_code == 302


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "-5"),
        ("price", "0"),
        ("price", "12.345"),
        ("price", "100000000"),
        ("price", "NaN"),
        ("stock_quantity", "-1"),
        ("stock_quantity", "2147483648"),
        ("stock_quantity", "1.5"),
        ("name", ""),
        ("name", "nul \x00 byte"),
        ("slug", "not a slug"),
        ("description", "x" * 20_001),
    ],
)
def test_a_bad_product_field_is_a_form_error_and_writes_nothing(admin_client, field, value):
    product = ProductFactory.create()

    with nothing_written():
        response = admin_client.post(
            reverse("admin:catalog_product_change", args=[product.pk]),
            product_change_data(product, **{field: value}),
        )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]


def test_a_taken_slug_is_a_form_error_and_writes_nothing(admin_client):
    ProductFactory.create(slug="taken")
    product = ProductFactory.create()

    with nothing_written():
        response = admin_client.post(
            reverse("admin:catalog_product_change", args=[product.pk]),
            product_change_data(product, slug="taken", price="1.00"),
        )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"]


def test_reordering_recommendations_records_the_new_order(admin_client):
    product, first, second, third = (ProductFactory.create() for _ in range(4))
    services.product_set_recommendations(product_id=product.pk, related_ids=[first.pk, second.pk])
    existing = list(Recommendation.objects.filter(product=product).order_by("rank"))
    start = last_position()
    data = product_change_data(product)
    data.update(recommendation_rows(product, [(0, third)], existing=existing))
    data["recommendations-0-rank"] = "5"
    data["recommendations-1-DELETE"] = "on"

    response = admin_client.post(reverse("admin:catalog_product_change", args=[product.pk]), data)

    assert response.status_code == 302
    assert list(
        Recommendation.objects.filter(product=product).values_list("related_id", flat=True)
    ) == [third.pk, first.pk]
    assert event_types_after(start) == ["RecommendationsChanged"]


@pytest.mark.parametrize("related", ["itself", "twice"])
def test_a_bad_recommendation_list_is_a_form_error_and_writes_nothing(admin_client, related):
    product, other = ProductFactory.create(), ProductFactory.create()
    rows = [(0, product)] if related == "itself" else [(0, other), (1, other)]
    data = product_change_data(product, price="1.00")
    data.update(recommendation_rows(product, rows))

    with nothing_written():
        response = admin_client.post(
            reverse("admin:catalog_product_change", args=[product.pk]), data
        )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.non_form_errors() or any(formset.errors)


def test_a_command_refused_at_save_time_rolls_back_the_whole_request(admin_client, monkeypatch):
    """Between the form's checks and the save, another writer may get in first."""
    product = ProductFactory.create(price=Decimal("19.99"))

    def taken_meanwhile(**kwargs):
        raise Conflict("Someone else changed this product.", field="stock_quantity")

    monkeypatch.setattr(services, "product_change_stock", taken_meanwhile)
    url = reverse("admin:catalog_product_change", args=[product.pk])

    with nothing_written():
        response = admin_client.post(
            url, product_change_data(product, name="Renamed", price="5.00", stock_quantity="1")
        )

    assert response.status_code == 302
    assert response.url == url
    assert messages_of(response) == ["Nothing was saved: Someone else changed this product."]


def test_products_and_sellers_cannot_be_deleted_in_the_admin(admin_client):
    product = ProductFactory.create()

    with nothing_written():
        product_response = admin_client.post(
            reverse("admin:catalog_product_delete", args=[product.pk]), {"post": "yes"}
        )
        seller_response = admin_client.post(
            reverse("admin:catalog_seller_delete", args=[product.seller_id]), {"post": "yes"}
        )

    assert product_response.status_code == 403
    assert seller_response.status_code == 403


def test_taking_products_off_sale_from_the_list_records_their_details(admin_client):
    on_sale, also_on_sale, untouched = (
        ProductFactory.create(),
        ProductFactory.create(),
        ProductFactory.create(),
    )
    start = last_position()

    response = admin_client.post(
        reverse("admin:catalog_product_changelist"),
        {"action": "take_off_sale", "_selected_action": [on_sale.pk, also_on_sale.pk]},
    )

    assert response.status_code == 302
    assert set(Product.objects.filter(is_active=False)) == {on_sale, also_on_sale}
    assert untouched.is_active
    assert sorted((e.event_type, e.stream_id) for e in events_after(start)) == [
        ("ProductDetailsChanged", on_sale.pk),
        ("ProductDetailsChanged", also_on_sale.pk),
    ]


def test_the_product_pages_render_with_the_price_history(admin_client):
    product = ProductFactory.create(price=Decimal("19.99"))
    services.product_change_price(product_id=product.pk, price="14.99")

    listing = admin_client.get(reverse("admin:catalog_product_changelist"), {"q": product.name})
    change = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk]))
    add = admin_client.get(reverse("admin:catalog_product_add"))

    assert listing.status_code == change.status_code == add.status_code == 200
    assert product.name in listing.content.decode()
    page = change.content.decode()
    assert "price history" in page.lower()
    assert "14.99" in page
    assert "19.99" in page
