import random

import pytest

from projections.engine import project_all
from projections.models import Checkpoint, ParkedEvent, RebuildRun
from projections.projectors.products import ProductProjection
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


@both_databases
def test_staff_retry_and_skip_parked_events_from_the_admin(
    client, staff_user, monkeypatch, settings
):
    settings.PROJECTION_MAX_ATTEMPTS = 1
    seed_catalog(random.Random(2), products=4)

    def broken(self, event):
        raise RuntimeError("broken handler")

    monkeypatch.setattr(ProductProjection, "product_created", broken)
    project_all()
    parked = list(ParkedEvent.objects.order_by("pk"))
    assert len(parked) == 4  # every partition parked its first ProductCreated
    monkeypatch.undo()
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
