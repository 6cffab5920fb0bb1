"""Erasing a user: each review goes with its event, their words leave the log,
and no other path removes reviews (or any projected row) silently."""

import io
import threading
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, models, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils.html import escape

from catalog.models import PriceChange, Product, Recommendation, Seller
from catalog.services import product_set_recommendations
from eventstore.models import Event
from eventstore.recording import declare_redaction
from kernel import errors as kernel_errors
from kernel.errors import NotFound
from projections.models import ProductReadModel
from projections.registry import project_all
from reviews import services
from reviews.erasure import REDACTED
from reviews.models import Review
from reviews.services import review_add, review_edit, review_hide, review_remove, user_erase
from tests.factories import ProductFactory, ReviewFactory, UserFactory
from tests.projections.history import assert_exact, snapshot, wipe_read_side
from tests.support import events_after, last_position, nothing_written

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

REDACTED_FIELDS = ("author_name", "title", "body")


class History:
    """Erin's reviews, and the others' around them.

    The popular product has seven reviews: Olga's (the oldest), Erin's, then
    five newer that fill the five shown. Removing one of the five brings the
    next newest back into the list: Erin's while it counts, Olga's once
    Erin's is gone. Erin also reviewed and edited another product, wrote one
    that staff hid, and one she removed herself.
    """

    def __init__(self) -> None:
        self.erin = UserFactory.create(username="erin")
        self.moderator = UserFactory.create(username="mod", is_staff=True)
        self.popular, self.edited, self.moderated, self.withdrawn = (
            ProductFactory.create() for _ in range(4)
        )
        self.olga = UserFactory.create(username="olga")
        self.oldest = review_add(
            product_id=self.popular.pk, author=self.olga, rating=2, body="Oldest words here."
        )
        self.on_popular = review_add(
            product_id=self.popular.pk,
            author=self.erin,
            rating=1,
            title="Erin's title",
            body="Erin's own words on it.",
        )
        self.newer = [
            review_add(
                product_id=self.popular.pk,
                author=UserFactory.create(username=f"newer{n}"),
                rating=5,
                body=f"Newer words number {n}.",
            )
            for n in range(5)
        ]
        self.on_edited = review_add(
            product_id=self.edited.pk, author=self.erin, rating=3, body="First thoughts of Erin."
        )
        review_edit(
            review_id=self.on_edited.pk, author=self.erin, rating=4, body="Second thoughts, Erin."
        )
        self.hidden = review_add(
            product_id=self.moderated.pk, author=self.erin, rating=5, body="Rude words by Erin."
        )
        review_hide(review_id=self.hidden.pk, moderator=self.moderator)
        self.removed = review_add(
            product_id=self.withdrawn.pk, author=self.erin, rating=2, body="Withdrawn by Erin."
        )
        review_remove(review_id=self.removed.pk, author=self.erin)
        self.others = ReviewFactory.create(product=self.edited, body="Someone else's words.")

    @property
    def erin_reviews(self) -> list[Review]:
        return [self.on_popular, self.on_edited, self.hidden]

    @property
    def erin_streams(self) -> set[int]:
        return {review.pk for review in [*self.erin_reviews, self.removed]}


def shown(product: Product) -> list[int]:
    return [entry["id"] for entry in ProductReadModel.objects.get(pk=product.pk).recent_reviews]


def payloads(stream_ids: set[int]) -> dict[int, dict]:
    events = Event.objects.filter(stream_type="review", stream_id__in=stream_ids)
    return {event.position: event.payload for event in events}


def test_erasing_a_user_removes_each_review_with_its_event_and_redacts_their_words():
    history = History()
    project_all()
    assert shown(history.popular) == [review.pk for review in reversed(history.newer)]
    erin_before = payloads(history.erin_streams)
    others = {history.oldest.pk, history.others.pk, *(review.pk for review in history.newer)}
    others_before = payloads(others)
    start = last_position()

    erased = user_erase(user_id=history.erin.pk)

    assert (erased.reviews_removed, erased.events_redacted) == (3, 5)
    assert not get_user_model().objects.filter(pk=history.erin.pk).exists()
    assert not Review.objects.filter(pk__in=history.erin_streams).exists()
    assert [(e.event_type, e.stream_id, e.payload) for e in events_after(start)] == [
        (
            "ReviewRemoved",
            review.pk,
            {
                "review_id": review.pk,
                "product_id": review.product_id,
                "rating": rating,
                "reason": "erasure",
                "counted": counted,
            },
        )
        for review, rating, counted in [
            (history.on_popular, 1, True),
            (history.on_edited, 4, True),
            (history.hidden, 5, False),  # hidden: it stopped counting when staff hid it
        ]
    ]
    # Her words are gone from every event of her reviews, the one she removed
    # herself included; every other field and every row stay.
    erin_after = payloads(history.erin_streams)
    assert erin_after.keys() == erin_before.keys() | {e.position for e in events_after(start)}
    for position, before in erin_before.items():
        after = erin_after[position]
        assert after == {
            key: REDACTED if key in REDACTED_FIELDS else value for key, value in before.items()
        }
    assert "Erin" not in str(erin_after)
    assert payloads(others) == others_before

    project_all()
    assert_exact()
    row = ProductReadModel.objects.get(pk=history.popular.pk)
    assert (row.review_count, row.rating_sum) == (6, 27)
    # One of the five shown goes: the next newest comes back, and Erin's
    # review, newer than Olga's, is not it.
    review_remove(review_id=history.newer[2].pk, author=history.newer[2].author)
    project_all()
    assert shown(history.popular) == [
        *(review.pk for review in reversed(history.newer) if review != history.newer[2]),
        history.oldest.pk,
    ]
    assert_exact()

    # The whole log replayed from the start, redacted events and all, is exact.
    wipe_read_side()
    project_all(batch_size=3)
    assert_exact()


def test_a_user_whose_only_review_is_hidden_is_erased_without_moving_any_count():
    hidden = ReviewFactory.create(rating=1)
    ReviewFactory.create(product=hidden.product, rating=5)
    review_hide(review_id=hidden.pk, moderator=UserFactory.create(is_staff=True))
    project_all()
    before = snapshot()
    start = last_position()

    user_erase(user_id=hidden.author_id)

    [event] = events_after(start)
    assert (event.event_type, event.payload["counted"]) == ("ReviewRemoved", False)
    project_all()
    assert snapshot() == before
    assert snapshot()[0][hidden.product_id]["review_count"] == 1
    assert_exact()


def test_a_moderator_is_erased_and_the_reviews_they_hid_stay_hidden():
    moderator = UserFactory.create(is_staff=True)
    hidden = ReviewFactory.create()
    review_hide(review_id=hidden.pk, moderator=moderator)
    start = last_position()

    user_erase(user_id=moderator.pk)

    hidden.refresh_from_db()
    assert (hidden.is_hidden, hidden.hidden_by_id) == (True, None)
    assert events_after(start) == []  # hidden_by is in no event and no read model
    project_all()
    assert_exact()


def test_erasing_an_unknown_user_is_refused_and_writes_nothing():
    with nothing_written(), pytest.raises(NotFound):
        user_erase(user_id=987654)


def test_deleting_a_user_through_the_orm_is_refused_and_writes_nothing():
    history = History()
    project_all()
    before = snapshot()
    users = get_user_model().objects

    with nothing_written():
        with pytest.raises(ProtectedError, match=r"Review\.author"):
            history.erin.delete()
        with pytest.raises(ProtectedError, match=r"Review\.author"):
            users.filter(pk=history.erin.pk).delete()

    assert users.filter(pk=history.erin.pk).exists()
    project_all()
    assert snapshot() == before
    assert_exact()


def test_no_cascade_removes_a_projected_row():
    """Products, sellers and users with projected rows under them cannot be
    deleted through the ORM: a cascade would remove rows without their events."""
    review = ReviewFactory.create()
    product = review.product
    other = ProductFactory.create(seller=product.seller)
    product_set_recommendations(product_id=other.pk, related_ids=[product.pk])

    with nothing_written():
        for doomed in (product, product.seller, other, review.author):
            with pytest.raises(ProtectedError):
                doomed.delete()


@pytest.mark.parametrize("model", [Seller, Product, PriceChange, Recommendation, Review])
def test_every_foreign_key_of_the_write_model_protects_what_it_references(model):
    for field in model._meta.concrete_fields:
        if not field.is_relation:
            continue
        if (model, field.name) == (Review, "hidden_by"):
            # The moderator is in no event and no read model: clearing it is silent and right.
            assert field.remote_field.on_delete is models.SET_NULL
            continue
        assert field.remote_field.on_delete is models.PROTECT, f"{model.__name__}.{field.name}"


def test_the_admin_deletes_a_user_by_erasing_them(admin_client):
    history = History()
    project_all()
    url = reverse("admin:auth_user_delete", args=[history.erin.pk])

    page = admin_client.get(url)

    assert page.status_code == 200
    text = page.content.decode()
    assert "protected" not in text
    assert "each removed with its own ReviewRemoved event" in text
    for review in history.erin_reviews:
        assert f"Review {review.pk} of" in text
    start = last_position()

    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=history.erin.pk).exists()
    assert sorted(
        (e.event_type, e.stream_id, e.payload["reason"]) for e in events_after(start)
    ) == sorted(("ReviewRemoved", review.pk, "erasure") for review in history.erin_reviews)
    assert "Erin" not in str(payloads(history.erin_streams))
    deletion = LogEntry.objects.get(object_id=str(history.erin.pk))
    assert deletion.object_repr == f"user #{history.erin.pk} (erased)"
    project_all()
    assert_exact()


def test_the_admin_erases_selected_users(admin_client):
    first, second = ReviewFactory.create(), ReviewFactory.create()
    project_all()
    changelist = reverse("admin:auth_user_changelist")
    chosen = {"action": "delete_selected", "_selected_action": [first.author_id, second.author_id]}

    confirm = admin_client.post(changelist, chosen)
    assert confirm.status_code == 200
    assert "each removed with its own ReviewRemoved event" in confirm.content.decode()
    start = last_position()
    response = admin_client.post(changelist, {**chosen, "post": "yes"})

    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk__in=[first.author_id, second.author_id])
    assert sorted(e.stream_id for e in events_after(start)) == sorted([first.pk, second.pk])
    project_all()
    assert_exact()


def test_erase_user_command_finds_the_user_by_username_or_id():
    by_name, by_id = ReviewFactory.create(), ReviewFactory.create()
    out = io.StringIO()

    call_command("erase_user", by_name.author.username, "--no-input", stdout=out)
    call_command("erase_user", str(by_id.author_id), "--no-input", stdout=out)

    assert f"Erased user #{by_name.author_id}: 1 review(s) removed" in out.getvalue()
    assert f"Erased user #{by_id.author_id}: 1 review(s) removed" in out.getvalue()
    assert not Review.objects.exists()
    with pytest.raises(CommandError, match="No user with the username or id"):
        call_command("erase_user", "nobody", "--no-input")


def test_erase_user_command_refuses_a_value_that_names_two_users():
    other = UserFactory.create()
    UserFactory.create(username=str(other.pk))

    with nothing_written(), pytest.raises(CommandError, match="is the username of user"):
        call_command("erase_user", str(other.pk), "--no-input")


@pytest.mark.postgres
def test_the_redaction_declares_itself_to_a_log_that_refuses_updates():
    """The event table's guard (migration projections 0007) refuses UPDATE
    unless the transaction set ``storefront.log_redaction``: the erasure
    declares itself, any other update is refused."""
    history = History()
    with (
        pytest.raises(Exception, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE projections_event SET version = version")

    assert user_erase(user_id=history.erin.pk).events_redacted == 5
    assert "Erin" not in str(payloads(history.erin_streams))


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change",
    [
        "request_id = 'rewritten'",
        "event_type = 'Rewritten'",
        "occurred_at = now() - interval '1 day'",
    ],
)
def test_a_redaction_may_change_the_payload_and_nothing_else(change):
    """The guard compares every column but the payload, so one added after it
    was written (``request_id``) cannot be rewritten under a redaction either."""
    History()
    with transaction.atomic(), connection.cursor() as cursor:
        declare_redaction()
        cursor.execute("UPDATE projections_event SET payload = payload")  # allowed
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            cursor.execute(f"UPDATE projections_event SET {change}")


def waiting_for_a_lock(deadline: float, sessions: int = 1) -> None:
    """Until ``sessions`` sessions of this database wait for a lock."""
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            )
            if cursor.fetchone()[0] >= sessions:
                return
        time.sleep(0.01)
    raise AssertionError(f"fewer than {sessions} sessions ever waited for a lock")


@pytest.mark.postgres
def test_a_review_command_during_an_erasure_waits_for_it_and_finds_the_review_gone():
    """The erasure holds the streams of the user's reviews from before its
    first write. Here it then waits for a row lock on Erin's first review
    (someone else holds it) while staff try to hide her second: the hide
    waits for the erasure instead of slipping in between, and then finds the
    review gone; the log reads the second review's events in the order they
    happened."""
    erin = UserFactory.create(username="erin")
    first, second = (ReviewFactory.create(author=erin) for _ in range(2))
    moderator = UserFactory.create(is_staff=True)
    holding, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def hold_first_review() -> None:
        try:
            with transaction.atomic():
                Review.objects.select_for_update().get(pk=first.pk)
                holding.set()
                release.wait(30)
        finally:
            connections.close_all()

    def erase() -> None:
        try:
            results["erased"] = user_erase(user_id=erin.pk)
        except BaseException as error:
            results["erase error"] = error
        finally:
            connections.close_all()

    def hide() -> None:
        try:
            review_hide(review_id=second.pk, moderator=moderator)
        except BaseException as error:
            results["hide error"] = error
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_first_review)
    holder.start()
    assert holding.wait(30)
    eraser, hider = threading.Thread(target=erase), threading.Thread(target=hide)
    eraser.start()
    try:
        waiting_for_a_lock(time.monotonic() + 30)
        hider.start()
        waiting_for_a_lock(time.monotonic() + 30, sessions=2)
        assert "hide error" not in results, "the hide did not wait for the erasure"
    finally:
        release.set()
        for thread in (holder, eraser, hider):
            thread.join(30)
    assert "erase error" not in results, results
    assert isinstance(results.get("hide error"), NotFound), results
    in_log_order = list(
        Event.objects.filter(stream_type="review", stream_id=second.pk).order_by(
            "transaction_id", "position"
        )
    )
    assert [(e.event_type, e.payload.get("reason")) for e in in_log_order] == [
        ("ReviewAdded", None),
        ("ReviewRemoved", "erasure"),
    ]
    project_all()
    assert_exact()


def overtaken_every_time(monkeypatch) -> list[list[int]]:
    """Every attempt finds a later transaction's event on one of the reviews
    (forced: the real race is the test above); the attempts are listed."""
    attempts: list[list[int]] = []

    def overtaken(review_ids):
        attempts.append(list(review_ids))
        return True

    monkeypatch.setattr(services.erasure, "recorded_after_this_transaction", overtaken)
    return attempts


def test_an_erasure_overtaken_every_time_is_refused(monkeypatch):
    review = ReviewFactory.create()
    attempts = overtaken_every_time(monkeypatch)

    with nothing_written(), pytest.raises(services.Conflict):
        user_erase(user_id=review.author_id)

    assert attempts == [[review.pk]] * services.ERASE_ATTEMPTS


def test_the_admin_says_when_an_erasure_is_refused(admin_client, monkeypatch):
    """The admin's delete runs in a transaction of its own, whose id cannot
    change: one attempt, then a message, and nothing written."""
    review = ReviewFactory.create()
    attempts = overtaken_every_time(monkeypatch)
    url = reverse("admin:auth_user_delete", args=[review.author_id])

    with nothing_written():
        response = admin_client.post(url, {"post": "yes"}, follow=True)

    assert len(attempts) == 1
    assert response.redirect_chain == [(url, 302)]
    assert escape(f"Not erased: {services.errors.USER_BUSY}") in response.content.decode()
    assert get_user_model().objects.filter(pk=review.author_id).exists()
    assert not LogEntry.objects.filter(object_id=str(review.author_id)).exists()


def test_a_review_posted_by_a_user_erased_meanwhile_is_a_409_and_leaves_nothing():
    """Signed in when the request began, erased before its command committed:
    the author's row is gone when the review's foreign key is checked."""
    from rest_framework.test import APIClient

    product = ProductFactory.create()
    author = UserFactory.create()
    user_erase(user_id=author.pk)
    client = APIClient()
    client.force_authenticate(author)  # the request's user, loaded before the erasure

    with nothing_written():
        response = client.post(
            "/api/reviews/", {"product": product.pk, "rating": 5, "body": "Lovely kettle."}
        )

    assert response.status_code == 409
    assert response.json() == {"detail": kernel_errors.CHANGED_MEANWHILE}
