"""Commands that lock products and link them to each other at the same time,
on real PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from catalog import services
from catalog.models import Recommendation
from tests.factories import ProductFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_products_linked_to_each_other_at_once_do_not_deadlock():
    """Two admin saves, each in one transaction: change a product's stock, then
    recommend the other product. Each transaction holds its own product's
    command lock when it inserts a row that references the other's."""
    first, second = ProductFactory.create(), ProductFactory.create()
    both_locked = threading.Barrier(2)

    def save(product, related):
        try:
            with transaction.atomic():
                services.product_change_stock(product_id=product.pk, quantity=3)
                both_locked.wait(timeout=10)
                services.product_set_recommendations(
                    product_id=product.pk, related_ids=[related.pk]
                )
            return None
        except Exception as error:
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(save, [first, second], [second, first]))

    assert results == [None, None]
    assert set(Recommendation.objects.values_list("product_id", "related_id")) == {
        (first.pk, second.pk),
        (second.pk, first.pk),
    }
