"""Reviews written at the same moment by many threads, on real PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from kernel.errors import Conflict
from reviews.models import Review
from reviews.services import review_add
from tests.factories import ProductFactory, UserFactory
from tests.support import events_after, last_position

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def add_all_at_once(product, authors):
    """Each author adds a review from a thread of its own, released together.

    Returns each thread's review, or the exception it raised.
    """
    start_line = threading.Barrier(len(authors))

    def add(author):
        try:
            start_line.wait(timeout=10)
            return review_add(
                product_id=product.pk, author=author, rating=4, body="Arrived today, works."
            )
        except Exception as error:
            return error
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(authors)) as pool:
        return list(pool.map(add, authors))


def test_twenty_authors_reviewing_one_product_at_once_all_get_their_review_and_event():
    product = ProductFactory.create()
    authors = [UserFactory.create() for _ in range(20)]
    start = last_position()

    results = add_all_at_once(product, authors)

    assert all(isinstance(result, Review) for result in results), results
    reviews = Review.objects.filter(product=product)
    assert sorted(reviews.values_list("author_id", flat=True)) == sorted(a.pk for a in authors)
    events = events_after(start)
    assert [event.event_type for event in events] == ["ReviewAdded"] * 20
    assert sorted(event.stream_id for event in events) == sorted(r.pk for r in reviews)


@pytest.mark.parametrize("attempt", range(5))
def test_one_author_reviewing_twice_at_once_gets_one_review_and_one_conflict(attempt):
    product, author = ProductFactory.create(), UserFactory.create()
    start = last_position()

    results = add_all_at_once(product, [author, author])

    winners = [result for result in results if isinstance(result, Review)]
    losers = [result for result in results if not isinstance(result, Review)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert type(losers[0]) is Conflict
    assert Review.objects.filter(product=product, author=author).count() == 1
    assert [event.event_type for event in events_after(start)] == ["ReviewAdded"]
