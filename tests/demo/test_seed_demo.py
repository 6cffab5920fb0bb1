"""``manage.py seed_demo``: realistic data, every row with its event."""

import io
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.models import PriceChange, Product, Recommendation, Seller
from eventstore.models import Event
from reviews.models import Review
from tests.support import nothing_written

pytestmark = pytest.mark.django_db

TINY = {"sellers": 2, "products": 8, "reviews": 30, "hot_reviews": 12, "price_changes": 7}


def seed(**options):
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", **{**TINY, "seed": 7, **options}, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def events_by_type():
    return Counter(Event.objects.values_list("event_type", flat=True))


def test_a_tiny_run_creates_the_data_with_exactly_matching_events():
    out, err = seed()

    products = Product.objects.count()
    assert Seller.objects.count() == 2
    assert products == 8
    assert Review.objects.count() == 30 + 12
    assert PriceChange.objects.count() == products + 7
    assert events_by_type() == {
        "SellerRegistered": 2,
        "ProductCreated": 8,
        "RecommendationsChanged": 8,
        "PriceChanged": 7,
        "ReviewAdded": 42,
    }
    assert "42 reviews" in out
    assert "reviews: 42 done" in err


def test_the_data_looks_like_a_shop():
    seed()

    per_product = Counter(Recommendation.objects.values_list("product_id", flat=True))
    assert set(per_product) == set(Product.objects.values_list("pk", flat=True))
    assert all(3 <= count <= 6 for count in per_product.values())
    reviews_per_product = Counter(Review.objects.values_list("product_id", flat=True))
    assert max(reviews_per_product.values()) >= 12
    assert set(Review.objects.values_list("rating", flat=True)) <= {1, 2, 3, 4, 5}
    assert all(len(body) >= 10 for body in Review.objects.values_list("body", flat=True))
    reviewers = get_user_model().objects.filter(reviews__isnull=False).distinct()
    assert all(user.username.startswith("reviewer") for user in reviewers)
    assert not any(user.has_usable_password() for user in reviewers)


def test_the_same_seed_gives_the_same_catalog():
    seed()
    first = list(Product.objects.order_by("pk").values_list("name", "price"))
    seed(force=True)
    second = list(Product.objects.order_by("pk").values_list("name", "price"))[len(first) :]

    assert [name for name, _ in second] == [name for name, _ in first]


def test_a_second_run_refuses_and_writes_nothing():
    seed()

    with nothing_written(), pytest.raises(CommandError, match="--force"):
        seed()


def test_if_empty_skips_a_seeded_catalog_quietly():
    seed()

    with nothing_written():
        out, _ = seed(if_empty=True)

    assert "no demo data added" in out


def test_force_adds_another_set_beside_the_first():
    seed()
    seed(force=True, seed=8)

    assert Product.objects.count() == 16
    assert Review.objects.count() == 84
    assert events_by_type()["ReviewAdded"] == 84


def test_the_demo_admin_exists_only_when_asked_for():
    seed()
    assert not get_user_model().objects.filter(username="admin").exists()

    out, _ = seed(if_empty=True, with_admin=True)

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff
    assert admin.is_superuser
    assert admin.check_password("admin")
    assert "admin / admin" in out


@pytest.mark.parametrize(
    "sizes",
    [{"products": -1}, {"sellers": 0}, {"products": 0}],
    ids=["negative", "products-without-sellers", "reviews-without-products"],
)
def test_impossible_sizes_are_refused(sizes):
    with nothing_written(), pytest.raises(CommandError):
        seed(**sizes)
