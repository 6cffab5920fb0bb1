"""Review moderation in the admin: staff find reviews and hide them, each with its event."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from reviews.models import Review
from reviews.services import review_hide
from tests.factories import ProductFactory, ReviewFactory, UserFactory
from tests.support import events_after, last_position, nothing_written

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:reviews_review_changelist"


def listed_ids(response):
    return {review.pk for review in response.context["cl"].result_list}


def test_the_list_searches_author_product_and_text(admin_client):
    chair = ProductFactory.create(name="Oak Chair")
    by_dora = ReviewFactory.create(
        author=UserFactory.create(username="dora"), body="Wobbly legs, sadly."
    )
    on_chair = ReviewFactory.create(product=chair, body="Comfortable enough.")
    about_lamp = ReviewFactory.create(body="The lamp flickers at night.")

    assert listed_ids(admin_client.get(reverse(CHANGELIST), {"q": "dora"})) == {by_dora.pk}
    assert listed_ids(admin_client.get(reverse(CHANGELIST), {"q": "Oak Chair"})) == {on_chair.pk}
    assert listed_ids(admin_client.get(reverse(CHANGELIST), {"q": "flickers"})) == {about_lamp.pk}


def test_the_list_filters_hidden_reviews_and_ratings(admin_client):
    hidden, shown = ReviewFactory.create(rating=1), ReviewFactory.create(rating=5)
    review_hide(review_id=hidden.pk, moderator=UserFactory.create(is_staff=True))

    only_hidden = admin_client.get(reverse(CHANGELIST), {"is_hidden__exact": "1"})
    only_fives = admin_client.get(reverse(CHANGELIST), {"rating": "5"})

    assert listed_ids(only_hidden) == {hidden.pk}
    assert listed_ids(only_fives) == {shown.pk}


def test_hiding_selected_reviews_records_one_event_per_review_newly_hidden(admin_client):
    first, second, untouched = (
        ReviewFactory.create(),
        ReviewFactory.create(),
        ReviewFactory.create(),
    )
    already = ReviewFactory.create()
    review_hide(review_id=already.pk, moderator=UserFactory.create(is_staff=True))
    start = last_position()

    response = admin_client.post(
        reverse(CHANGELIST),
        {"action": "hide_selected", "_selected_action": [first.pk, second.pk, already.pk]},
    )

    assert response.status_code == 302
    assert set(Review.objects.filter(is_hidden=True)) == {first, second, already}
    assert not Review.objects.get(pk=untouched.pk).is_hidden
    assert sorted(
        (e.event_type, e.stream_id, e.payload["reason"]) for e in events_after(start)
    ) == [
        ("ReviewRemoved", first.pk, "moderation"),
        ("ReviewRemoved", second.pk, "moderation"),
    ]
    assert "2 review(s) hidden." in [str(m) for m in get_messages(response.wsgi_request)]


def test_a_review_can_be_hidden_from_its_own_page(admin_client):
    review = ReviewFactory.create()
    url = reverse("admin:reviews_review_change", args=[review.pk])
    start = last_position()

    page = admin_client.get(url)
    response = admin_client.post(
        url, {"CHANGE_FORM-action": "hide_selected", "_selected_action": [review.pk]}
    )

    assert page.status_code == 200
    assert "Hide selected reviews" in page.content.decode()
    assert response.status_code == 302
    assert Review.objects.get(pk=review.pk).is_hidden
    assert [e.event_type for e in events_after(start)] == ["ReviewRemoved"]


def test_reviews_cannot_be_added_edited_or_deleted_in_the_admin(admin_client):
    review = ReviewFactory.create(rating=2, body="Meh, it is okay.")

    with nothing_written():
        add = admin_client.post(
            reverse("admin:reviews_review_add"),
            {"product": review.product_id, "author": review.author_id, "rating": 5},
        )
        change = admin_client.post(
            reverse("admin:reviews_review_change", args=[review.pk]),
            {"rating": "5", "body": "Rewritten by staff."},
        )
        delete = admin_client.post(
            reverse("admin:reviews_review_delete", args=[review.pk]), {"post": "yes"}
        )
        bulk_delete = admin_client.post(
            reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [review.pk]}
        )

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    assert bulk_delete.status_code == 302  # back to the list: there is no such action


def test_staff_who_may_only_view_reviews_cannot_hide_them(client):
    viewer = UserFactory.create(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_review"))
    review = ReviewFactory.create()
    client.force_login(viewer)

    with nothing_written():
        listing = client.get(reverse(CHANGELIST))
        client.post(
            reverse(CHANGELIST), {"action": "hide_selected", "_selected_action": [review.pk]}
        )

    assert listing.status_code == 200
    assert "hide_selected" not in listing.content.decode()
