import random

import pytest
from django.contrib.auth.models import Permission

from projections.models import Checkpoint, ParkedEvent, RebuildRun
from projections.projectors.products import ProductProjection
from projections.registry import project_all
from tests.projections.history import seed_catalog

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@both_databases
def test_staff_see_projector_status_and_the_last_rebuild(client, staff_user, user):
    seed_catalog(random.Random(1), products=3)
    project_all()
    RebuildRun.objects.create(mode="snapshot", phase=RebuildRun.Phase.TAIL, rows=12)
    client.force_login(user)
    assert client.get("/admin/projections/checkpoint/").status_code == 302  # not staff
    client.force_login(staff_user)
    page = client.get("/admin/projections/checkpoint/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Projector status" in text
    assert text.count('class="partition-status"') == Checkpoint.objects.count() == 5
    assert "Catching up with new events" in text


@pytest.fixture
def parked(monkeypatch, settings):
    """Four parked events: every partition parked its first ProductCreated."""
    settings.PROJECTION_MAX_ATTEMPTS = 1
    seed_catalog(random.Random(2), products=4)

    def broken(self, event):
        raise RuntimeError("broken handler")

    monkeypatch.setattr(ProductProjection, "product_created", broken)
    project_all()
    parked = list(ParkedEvent.objects.order_by("pk"))
    assert len(parked) == 4
    monkeypatch.undo()
    return parked


@both_databases
def test_staff_retry_and_skip_parked_events_from_the_admin(client, staff_user, parked):
    client.force_login(staff_user)
    url = "/admin/projections/parkedevent/"
    assert "broken handler" in client.get(url).content.decode()
    client.post(url, {"action": "retry", "_selected_action": [parked[0].pk, parked[1].pk]})
    client.post(url, {"action": "skip", "_selected_action": [parked[2].pk]})
    statuses = dict(ParkedEvent.objects.values_list("pk", "status"))
    assert statuses[parked[0].pk] == ParkedEvent.Status.RETRY
    assert statuses[parked[2].pk] == ParkedEvent.Status.SKIPPED
    assert statuses[parked[3].pk] == ParkedEvent.Status.PARKED
    halted = Checkpoint.objects.filter(halted_at_position__isnull=False)
    assert halted.count() == 1  # the one left parked
    project_all()
    assert ParkedEvent.objects.get(pk=parked[0].pk).status == ParkedEvent.Status.RESOLVED


@both_databases
def test_retry_and_skip_need_the_projection_permission_not_just_staff(
    client, django_user_model, parked
):
    operator = django_user_model.objects.create_user(username="operator", is_staff=True)
    client.force_login(operator)
    url = "/admin/projections/parkedevent/"
    page = client.get(url)
    assert page.status_code == 200
    assert "broken handler" in page.content.decode(), "staff still see what is parked"
    assert 'value="retry"' not in page.content.decode()
    assert 'value="skip"' not in page.content.decode()
    for action in ("retry", "skip"):
        forged = client.post(url, {"action": action, "_selected_action": [parked[0].pk]})
        assert forged.status_code == 403
    assert set(ParkedEvent.objects.values_list("status", flat=True)) == {ParkedEvent.Status.PARKED}

    operator.user_permissions.add(Permission.objects.get(codename="resolve_parkedevent"))
    page = client.get(url)
    assert 'value="retry"' in page.content.decode()
    assert 'value="skip"' in page.content.decode()
    client.post(url, {"action": "retry", "_selected_action": [parked[0].pk]})
    client.post(url, {"action": "skip", "_selected_action": [parked[1].pk]})
    assert ParkedEvent.objects.get(pk=parked[0].pk).status == ParkedEvent.Status.RETRY
    assert ParkedEvent.objects.get(pk=parked[1].pk).status == ParkedEvent.Status.SKIPPED
