"""The review form when the write database fails: a 503 that says the review
was not saved, never the success redirect, and nothing written.

Both failures are real, on both databases: the write database out of reach
for the request (its alias pointed at a port, or a path, with nothing
behind it), and the command's own write refused while the session and the
user were read fine (the product's lock held by another connection past the
request's lock timeout).
"""

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction

from catalog.models import Product
from projections.registry import project_all
from tests.factories import ProductFactory
from tests.projections.processes import free_port
from tests.support import write_side

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

REVIEW = {"rating": "4", "title": "Sturdy", "body": "Solid, works as described."}


@pytest.fixture
def product():
    product = ProductFactory.create()
    project_all()
    return product


@contextlib.contextmanager
def write_database_out_of_reach() -> Iterator[None]:
    """This thread's ``default`` connection reopens at an address where no
    database answers, until the block ends."""
    original = connection.settings_dict
    unreachable = dict(original)
    if connection.vendor == "postgresql":
        unreachable["HOST"], unreachable["PORT"] = "127.0.0.1", free_port()
    else:
        unreachable["NAME"] = "/nonexistent-directory/write.sqlite3"
    connection.close()
    connection.settings_dict = unreachable
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict = original


@contextlib.contextmanager
def product_locked_elsewhere(product: Product) -> Iterator[None]:
    """Another connection holds what ``review_add`` must lock first (the
    product's row on PostgreSQL, the write lock on SQLite), and this
    thread's connection gives up waiting after 0.2 s."""
    if connection.vendor == "postgresql":
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            try:
                with transaction.atomic():
                    Product.objects.select_for_update().get(pk=product.pk)
                    holding.set()
                    release.wait(30)
            finally:
                connections.close_all()

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        try:
            yield
        finally:
            release.set()
            holder.join(30)
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        return
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    connection.ensure_connection()
    connection.connection.execute("PRAGMA busy_timeout = 200")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()
        connection.close()


def assert_not_saved(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"]
    assert "Location" not in response
    page = response.content.decode()
    assert "Your review was not saved" in page
    assert "is saved" not in page
    assert "Solid, works as described." in page  # given back, to send again
    assert "sessionid" not in response.cookies  # still signed in


def test_the_write_database_out_of_reach_is_not_a_saved_review(client, user, product):
    client.force_login(user)
    before = write_side()

    with write_database_out_of_reach():
        response = client.post(f"/products/{product.pk}/reviews/", REVIEW)

    assert_not_saved(response)
    assert write_side() == before


def test_a_write_refused_by_the_database_is_not_a_saved_review(client, user, product):
    client.force_login(user)
    before = write_side()

    with product_locked_elsewhere(product):
        response = client.post(f"/products/{product.pk}/reviews/", REVIEW)

    assert_not_saved(response)
    assert write_side() == before
    # Sent again once the database is back, it is saved.
    again = client.post(f"/products/{product.pk}/reviews/", REVIEW)
    assert again.status_code == 302
