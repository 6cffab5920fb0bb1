"""Bad input to every review command: a domain error naming the field, and nothing written."""

import pytest
from django.contrib.auth.models import AnonymousUser

from catalog import services as catalog_services
from kernel.errors import Conflict, InvalidInput, NotAllowed, NotFound
from reviews.services import review_add, review_edit, review_hide, review_remove
from tests.factories import ProductFactory, ReviewFactory, UserFactory
from tests.support import nothing_written

pytestmark = pytest.mark.django_db

UNKNOWN_ID = 987_654_321
BAD_RATINGS = [0, 6, -1, 4.5, "5", True, False, None, 10**20]
BAD_BODIES = [
    "too short",
    "x" * 5001,
    "nul byte \x00 in the middle",
    "lone \ud800 surrogate here",
    "\udc00" * 12,
    12345678901,
    None,
    b"bytes body here",
]
BAD_IDS = [UNKNOWN_ID, 0, -1, "1", True, None]
NOT_SIGNED_IN = [None, AnonymousUser(), object()]


@pytest.fixture
def review():
    return ReviewFactory.create(rating=3, body="It is fine, really.")


def refused(error_class, field, command):
    with nothing_written(), pytest.raises(error_class) as raised:
        command()
    assert raised.value.field == field
    assert raised.value.message


@pytest.mark.parametrize("rating", BAD_RATINGS)
def test_review_add_refuses_a_bad_rating(rating):
    product, author = ProductFactory.create(), UserFactory.create()
    refused(
        InvalidInput,
        "rating",
        lambda: review_add(
            product_id=product.pk, author=author, rating=rating, body="Long enough body."
        ),
    )


@pytest.mark.parametrize("body", BAD_BODIES)
def test_review_add_refuses_a_bad_body(body):
    product, author = ProductFactory.create(), UserFactory.create()
    refused(
        InvalidInput,
        "body",
        lambda: review_add(product_id=product.pk, author=author, rating=4, body=body),
    )


@pytest.mark.parametrize("product_id", BAD_IDS)
def test_review_add_refuses_an_unknown_product(product_id):
    author = UserFactory.create()
    refused(
        NotFound,
        "product",
        lambda: review_add(product_id=product_id, author=author, rating=4, body="Long enough."),
    )


def test_review_add_refuses_a_product_off_sale():
    product, author = ProductFactory.create(), UserFactory.create()
    catalog_services.product_change_details(product_id=product.pk, is_active=False)
    refused(
        Conflict,
        "product",
        lambda: review_add(product_id=product.pk, author=author, rating=4, body="Long enough."),
    )


@pytest.mark.parametrize("author", NOT_SIGNED_IN, ids=["none", "anonymous", "object"])
def test_review_add_refuses_someone_not_signed_in(author):
    product = ProductFactory.create()
    refused(
        NotAllowed,
        None,
        lambda: review_add(product_id=product.pk, author=author, rating=4, body="Long enough."),
    )


@pytest.mark.parametrize("rating", [r for r in BAD_RATINGS if r is not None])
def test_review_edit_refuses_a_bad_rating(review, rating):
    refused(
        InvalidInput,
        "rating",
        lambda: review_edit(review_id=review.pk, author=review.author, rating=rating),
    )


@pytest.mark.parametrize("body", [b for b in BAD_BODIES if b is not None])
def test_review_edit_refuses_a_bad_body(review, body):
    refused(
        InvalidInput,
        "body",
        lambda: review_edit(review_id=review.pk, author=review.author, body=body),
    )


def test_review_edit_refuses_an_edit_that_changes_nothing_given(review):
    refused(InvalidInput, None, lambda: review_edit(review_id=review.pk, author=review.author))


@pytest.mark.parametrize("review_id", BAD_IDS)
@pytest.mark.parametrize(
    "command",
    [
        lambda pk, user: review_edit(review_id=pk, author=user, rating=2),
        lambda pk, user: review_remove(review_id=pk, author=user),
        lambda pk, user: review_hide(review_id=pk, moderator=user),
    ],
    ids=["edit", "remove", "hide"],
)
def test_review_commands_refuse_an_unknown_review(review, command, review_id):
    staff_author = UserFactory.create(is_staff=True)
    refused(NotFound, "review", lambda: command(review_id, staff_author))


@pytest.mark.parametrize(
    "command",
    [
        lambda pk, user: review_edit(review_id=pk, author=user, rating=1),
        lambda pk, user: review_remove(review_id=pk, author=user),
    ],
    ids=["edit", "remove"],
)
def test_only_the_author_may_edit_or_remove(review, command):
    stranger = UserFactory.create(is_staff=True)
    refused(NotAllowed, None, lambda: command(review.pk, stranger))


@pytest.mark.parametrize(
    "command",
    [
        lambda pk, user: review_edit(review_id=pk, author=user, rating=1),
        lambda pk, user: review_remove(review_id=pk, author=user),
        lambda pk, user: review_hide(review_id=pk, moderator=user),
    ],
    ids=["edit", "remove", "hide"],
)
@pytest.mark.parametrize("user", NOT_SIGNED_IN, ids=["none", "anonymous", "object"])
def test_review_commands_refuse_someone_not_signed_in(review, command, user):
    refused(NotAllowed, None, lambda: command(review.pk, user))


def test_only_staff_may_hide(review):
    refused(
        NotAllowed,
        None,
        lambda: review_hide(review_id=review.pk, moderator=review.author),
    )


def test_a_hidden_review_cannot_be_edited(review):
    review_hide(review_id=review.pk, moderator=UserFactory.create(is_staff=True))
    refused(
        Conflict,
        None,
        lambda: review_edit(review_id=review.pk, author=review.author, rating=5),
    )
