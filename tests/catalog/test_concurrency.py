"""Commands that lock products and link them to each other at the same time,
on real PostgreSQL."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, transaction

from catalog import services
from catalog.models import Product, Recommendation
from eventstore.models import Event
from eventstore.recording import command_transaction
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


ROUNDS = 40
WAITERS = 4


def _hold(product_id: int, quantity: int, holding: threading.Event, release: threading.Event):
    """A command on the product whose transaction stays open until ``release``."""
    try:
        with command_transaction():
            services.product_change_stock(product_id=product_id, quantity=quantity)
            holding.set()
            release.wait(10)
    finally:
        connection.close()


def _queue(product_id: int, price: Decimal) -> None:
    try:
        services.product_change_price(product_id=product_id, price=price)
    finally:
        connection.close()


def test_commands_on_one_product_are_read_in_the_order_they_ran():
    """A command holds the product while it changes it; others queue behind.
    PostgreSQL can give a queued transaction its id while it waits on the
    row and still let a later one take the row first, so by row locks alone
    the log would sometimes read their events in the wrong order. Each round:
    one command holds the product, four queue, it commits; the events of the
    product must read (by transaction id) in the order they were written."""
    product = ProductFactory.create()
    for round_ in range(ROUNDS):
        holding, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_hold, args=(product.pk, round_ + 1000, holding, release))
        holder.start()
        assert holding.wait(10)
        queued = [
            threading.Thread(target=_queue, args=(product.pk, Decimal(f"{round_ + 1}.{n:02d}")))
            for n in range(WAITERS)
        ]
        for thread in queued:
            thread.start()
            time.sleep(0.01)
        time.sleep(0.05)  # all of them waiting on the product
        release.set()
        for thread in [holder, *queued]:
            thread.join(10)

    events = Event.objects.filter(stream_type="product", stream_id=product.pk)
    in_reading_order = list(events.order_by("transaction_id", "position"))
    assert [e.position for e in in_reading_order] == sorted(e.position for e in in_reading_order)
    final_price = Product.objects.get(pk=product.pk).price
    last_price = [e for e in in_reading_order if e.event_type == "PriceChanged"][-1]
    assert Decimal(last_price.payload["price"]) == final_price
