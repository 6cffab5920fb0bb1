"""Review commands: authors add, edit and remove their own; staff hide any;
erasing a user removes all of theirs.

Like every command, each runs in one ``command_transaction`` that takes the
lock of the aggregate it changes (the product for a new review, the review
otherwise) before its first write; see ``catalog.services`` for why that
order matters to the event log.
"""

import dataclasses
from typing import Any, cast

from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from eventstore.events import send_event
from eventstore.recording import command_transaction, lock_stream
from kernel.aggregates import conflict_on_integrity_error, locked
from kernel.cleaning import clean_id, clean_text, clean_whole_number
from kernel.errors import (
    NOT_STAFF,
    PRODUCT_INACTIVE,
    PRODUCT_NOT_FOUND,
    Conflict,
    InvalidInput,
    NotAllowed,
    NotFound,
)
from kernel.metrics import measured_command
from reviews import erasure, errors
from reviews.events import ReviewAdded, ReviewEdited, ReviewEvent, ReviewRemoved
from reviews.models import MAX_BODY, MAX_TITLE, MIN_BODY, Review

# Whoever sent the command, signed in or not (``request.user``); each command checks.
Actor = AbstractBaseUser | AnonymousUser
# A new review takes the reviewed product's own command lock: the catalog's
# product stream (``catalog.events.ProductEvent.stream_type``).
PRODUCT_STREAM = "product"


def clean_rating(value: Any) -> int:
    return clean_whole_number(
        value, field="rating", minimum=1, maximum=5, message=errors.RATING_OUT_OF_RANGE
    )


def clean_body(value: Any) -> str:
    return clean_text(
        value, field="body", min_length=MIN_BODY, max_length=MAX_BODY, message=errors.BODY_LENGTH
    )


def _require_user(user: Any) -> User:
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        raise NotAllowed(errors.SIGN_IN)
    return cast(User, user)


def _locked_review(review_id: Any) -> Review:
    """The review, locked alone (``FOR UPDATE OF`` the review): locking its
    author's row too would deadlock with ``user_erase``, which locks that row
    before the reviews."""
    return locked(
        Review,
        review_id,
        stream_type=ReviewEvent.stream_type,
        not_found=errors.REVIEW_NOT_FOUND,
        field="review",
        no_key=False,
        related=("author",),
    )


def _reviewed_product(product_id: Any) -> Any:
    """The product to review, under its command lock (references to it may go
    on). Reached through ``Review.product``: reviews depend on the catalog
    only by that key."""
    product_model = Review._meta.get_field("product").related_model
    assert isinstance(product_model, type)
    return locked(
        product_model,
        product_id,
        stream_type=PRODUCT_STREAM,
        not_found=PRODUCT_NOT_FOUND,
        field="product",
    )


def clean_title(value: Any) -> str:
    if isinstance(value, str):
        value = value.strip()
    return clean_text(
        value, field="title", min_length=0, max_length=MAX_TITLE, message=errors.TITLE_LENGTH
    )


@measured_command
def review_add(
    *, product_id: int, author: Actor, rating: int, body: str, title: str = ""
) -> Review:
    author = _require_user(author)
    rating = clean_rating(rating)
    title = clean_title(title)
    body = clean_body(body)
    with command_transaction():
        product = _reviewed_product(product_id)
        if not product.is_active:
            raise Conflict(PRODUCT_INACTIVE, field="product")
        if Review.objects.filter(product=product, author=author).exists():
            raise Conflict(errors.REVIEW_EXISTS)
        now = timezone.now()
        with conflict_on_integrity_error(errors.REVIEW_EXISTS):
            review = Review.objects.create(
                product=product,
                author=author,
                rating=rating,
                title=title,
                body=body,
                created_at=now,
            )
        send_event(
            ReviewAdded(
                review_id=review.pk,
                product_id=product.pk,
                author_id=author.pk,
                author_name=author.get_username(),
                rating=rating,
                title=title,
                body=body,
                created_at=now,
            )
        )
    return review


@measured_command
def review_edit(
    *, review_id: int, author: Actor, rating: int | None = None, body: str | None = None
) -> Review:
    author = _require_user(author)
    new_rating = clean_rating(rating) if rating is not None else None
    new_body = clean_body(body) if body is not None else None
    if new_rating is None and new_body is None:
        raise InvalidInput(errors.NOTHING_TO_CHANGE)
    with command_transaction():
        review = _locked_review(review_id)
        if review.author_id != author.pk:
            raise NotAllowed(errors.REVIEW_NOT_YOURS)
        if review.is_hidden:
            raise Conflict(errors.REVIEW_HIDDEN)
        previous = (review.rating, review.body)
        review.rating = new_rating if new_rating is not None else review.rating
        review.body = new_body if new_body is not None else review.body
        if (review.rating, review.body) == previous:
            return review
        review.edited_at = timezone.now()
        review.save(update_fields=["rating", "body", "edited_at"])
        send_event(
            ReviewEdited(
                review_id=review.pk,
                product_id=review.product_id,
                rating=review.rating,
                previous_rating=previous[0],
                body=review.body,
                edited_at=review.edited_at,
            )
        )
    return review


@measured_command
def review_remove(*, review_id: int, author: Actor) -> None:
    """The author deletes their review; they may write a new one afterwards."""
    author = _require_user(author)
    with command_transaction():
        review = _locked_review(review_id)
        if review.author_id != author.pk:
            raise NotAllowed(errors.REVIEW_NOT_YOURS)
        event = ReviewRemoved(
            review_id=review.pk,
            product_id=review.product_id,
            rating=review.rating,
            reason="author",
            counted=not review.is_hidden,
        )
        review.delete()
        send_event(event)


@measured_command
def review_hide(*, review_id: int, moderator: Actor) -> Review:
    """Staff moderation: the review stays in the write model but stops counting."""
    moderator = _require_user(moderator)
    if not getattr(moderator, "is_staff", False):
        raise NotAllowed(NOT_STAFF)
    with command_transaction():
        review = _locked_review(review_id)
        if review.is_hidden:
            return review
        review.is_hidden = True
        review.hidden_at = timezone.now()
        review.hidden_by = moderator
        review.save(update_fields=["is_hidden", "hidden_at", "hidden_by"])
        send_event(
            ReviewRemoved(
                review_id=review.pk,
                product_id=review.product_id,
                rating=review.rating,
                reason="moderation",
            )
        )
    return review


# Attempts at an erasure overtaken by review commands (see ``user_erase``).
ERASE_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class UserErasure:
    user_id: int
    reviews_removed: int
    events_redacted: int


class _Overtaken(Exception):
    """A review command took its transaction id after the erasure's and
    committed before the erasure locked its review."""


@measured_command
def user_erase(*, user_id: int) -> UserErasure:
    """Erase a user: remove each of their reviews with its ``ReviewRemoved``
    event (reason "erasure"; a hidden one no longer counted, as
    ``review_remove`` says), redact their name and words in the event log
    (``reviews.erasure``), and delete the user, in one transaction.

    Deleting the user cascades only to rows nothing projects: their API
    token, group and permission links, and their own admin history;
    ``Review.hidden_by`` is cleared on the reviews they moderated. The admin's
    entries about them are renamed, since they give their username.

    Lock order: the user first (that gives the transaction its id and keeps
    new reviews of theirs from committing), then their reviews in id order.
    A review command that took its id after this transaction but committed
    before the lock reached its review would be read after the erasure in the
    log, against the order they happened; if one did, the erasure starts
    again with a later id, ``ERASE_ATTEMPTS`` times at most. Inside a
    transaction already open (the admin's delete) the id cannot change: it
    is refused at once, and nothing is written.
    """
    pk = clean_id(user_id)
    if not pk:
        raise NotFound(errors.USER_NOT_FOUND, field="user")
    attempts = 1 if transaction.get_connection().in_atomic_block else ERASE_ATTEMPTS
    for _ in range(attempts):
        try:
            return _erase(pk)
        except _Overtaken:
            continue
    raise Conflict(errors.USER_BUSY)


def _erase(user_id: int) -> UserErasure:
    model = get_user_model()
    with command_transaction():
        # The streams first, before the first write gives this transaction its
        # id: review commands that ran before it get lower ids.
        lock_stream("user", user_id)
        known = Review.objects.filter(author_id=user_id).order_by("pk").values_list("pk", flat=True)
        for review_id in known:
            lock_stream(ReviewEvent.stream_type, review_id)
        user = model.objects.select_for_update().filter(pk=user_id).first()
        if user is None:
            raise NotFound(errors.USER_NOT_FOUND, field="user")
        reviews = list(Review.objects.select_for_update().filter(author=user).order_by("pk"))
        if erasure.recorded_after_this_transaction([review.pk for review in reviews]):
            raise _Overtaken
        for review in reviews:
            send_event(
                ReviewRemoved(
                    review_id=review.pk,
                    product_id=review.product_id,
                    rating=review.rating,
                    reason="erasure",
                    counted=not review.is_hidden,
                )
            )
        Review.objects.filter(pk__in=[review.pk for review in reviews]).delete()
        redacted = erasure.redact_review_events(author_id=user.pk)
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(model), object_id=str(user.pk)
        ).update(object_repr=f"user #{user.pk} (erased)")
        user.delete()
    return UserErasure(user_id=user_id, reviews_removed=len(reviews), events_redacted=redacted)
