import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.api.factories import ProductRowFactory, SellerRowFactory, set_checkpoints


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The review throttle counts in the cache; each test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def detail_rows():
    """Product 42 of seller 7, and the seller, both projected up to position 10."""
    set_checkpoints("products", 10, 10)
    set_checkpoints("sellers", 10, 10)
    ProductRowFactory(product_id=42, seller_id=7)
    SellerRowFactory(seller_id=7)
