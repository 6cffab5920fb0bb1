"""Each review command records exactly its event, in its own transaction."""

from typing import Any

import pytest
from django.utils.functional import SimpleLazyObject

from kernel.errors import Conflict
from reviews.models import Review
from reviews.services import review_add, review_edit, review_hide, review_remove
from tests.factories import ProductFactory, ReviewFactory, UserFactory
from tests.support import nothing_written, records_one_event

pytestmark = pytest.mark.django_db


def test_review_add_records_review_added():
    product, author = ProductFactory.create(), UserFactory.create(username="carol")

    with records_one_event("ReviewAdded", "review", version=2) as events:
        review = review_add(
            product_id=product.pk, author=author, rating=5, title=" Sturdy ", body="Love it, truly."
        )

    assert events[0].stream_id == review.pk
    assert events[0].version == 2
    assert review.title == "Sturdy"
    assert events[0].payload == {
        "review_id": review.pk,
        "product_id": product.pk,
        "author_id": author.pk,
        "author_name": "carol",
        "rating": 5,
        "title": "Sturdy",
        "body": "Love it, truly.",
        "created_at": review.created_at.isoformat(),
    }


def test_review_edit_records_review_edited_with_the_previous_rating():
    review = ReviewFactory.create(rating=2)

    with records_one_event("ReviewEdited", "review") as events:
        review_edit(review_id=review.pk, author=review.author, rating=4, body="Grew on me a lot.")

    review.refresh_from_db()
    assert (review.rating, review.body) == (4, "Grew on me a lot.")
    assert review.edited_at is not None
    assert events[0].payload == {
        "review_id": review.pk,
        "product_id": review.product_id,
        "rating": 4,
        "previous_rating": 2,
        "body": "Grew on me a lot.",
        "edited_at": review.edited_at.isoformat(),
    }


def test_review_edit_with_the_same_content_records_nothing():
    review = ReviewFactory.create(rating=3, body="Exactly the same.")

    with nothing_written():
        review_edit(review_id=review.pk, author=review.author, rating=3, body="Exactly the same.")


def test_review_remove_deletes_the_review_and_records_review_removed():
    review = ReviewFactory.create(rating=1)

    with records_one_event("ReviewRemoved", "review") as events:
        review_remove(review_id=review.pk, author=review.author)

    assert not Review.objects.filter(pk=review.pk).exists()
    assert events[0].payload == {
        "review_id": review.pk,
        "product_id": review.product_id,
        "rating": 1,
        "reason": "author",
        "counted": True,
    }


def test_the_author_may_review_again_after_removing():
    review = ReviewFactory.create()
    review_remove(review_id=review.pk, author=review.author)

    again = review_add(
        product_id=review.product_id, author=review.author, rating=2, body="Second thoughts."
    )

    assert again.pk != review.pk


def test_review_hide_keeps_the_review_and_records_review_removed_by_moderation():
    review = ReviewFactory.create(rating=5)
    moderator = UserFactory.create(is_staff=True)

    with records_one_event("ReviewRemoved", "review") as events:
        review_hide(review_id=review.pk, moderator=moderator)

    review.refresh_from_db()
    assert review.is_hidden
    assert review.hidden_by == moderator
    assert events[0].payload == {
        "review_id": review.pk,
        "product_id": review.product_id,
        "rating": 5,
        "reason": "moderation",
        "counted": True,
    }


def test_hiding_a_hidden_review_again_records_nothing():
    review = ReviewFactory.create()
    moderator = UserFactory.create(is_staff=True)
    review_hide(review_id=review.pk, moderator=moderator)

    with nothing_written():
        review_hide(review_id=review.pk, moderator=moderator)


def test_removing_a_hidden_review_records_that_it_no_longer_counted():
    review = ReviewFactory.create()
    review_hide(review_id=review.pk, moderator=UserFactory.create(is_staff=True))

    with records_one_event("ReviewRemoved", "review") as events:
        review_remove(review_id=review.pk, author=review.author)

    assert events[0].payload["counted"] is False


def test_a_second_review_by_the_same_author_is_a_conflict_and_writes_nothing():
    review = ReviewFactory.create()

    with nothing_written(), pytest.raises(Conflict):
        review_add(
            product_id=review.product_id, author=review.author, rating=1, body="Changed my mind."
        )


def test_commands_accept_the_lazy_request_user():
    """Views pass ``request.user``, a lazy proxy; relations to it must still route."""
    product, user = ProductFactory.create(), UserFactory.create()
    lazy_user: Any = SimpleLazyObject(lambda: user)
    lazy_moderator: Any = SimpleLazyObject(lambda: UserFactory.create(is_staff=True))

    review = review_add(product_id=product.pk, author=lazy_user, rating=5, body="Through a view.")
    review_hide(review_id=review.pk, moderator=lazy_moderator)

    assert Review.objects.get(pk=review.pk).author == user
