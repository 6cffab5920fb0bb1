"""The parked events' history across a rebuild: what operators skipped,
retried and resolved stays on record; an open record follows the rebuilt
partition (still halted at it, or not)."""

import io
import random

import pytest
from django.core.management import call_command

from catalog.services import product_change_stock
from eventstore.models import Event
from projections.engine import skip_parked
from projections.models import Checkpoint, ParkedEvent, ProductReadModel
from projections.projectors.products import ProductProjection
from projections.rebuild import backfill_from_snapshot, create_shadow, rebuild, shadow_alias, swap
from projections.registry import project_all
from tests.projections.history import assert_exact, seed_catalog

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def quiet(*args: object) -> None:
    return None


def park_stock_changes(monkeypatch, settings, *quantities: int) -> tuple[int, list[ParkedEvent]]:
    """A product's stock changes, each parked by a failing handler on the
    first try; each one but the last is skipped, so the next can park. The
    handler works again afterwards."""
    settings.PROJECTION_MAX_ATTEMPTS = 1
    seed_catalog(random.Random(6), products=4)
    product_id = (
        Event.objects.filter(event_type="ProductCreated").earliest("position").payload["product_id"]
    )
    for quantity in quantities:
        product_change_stock(product_id=product_id, quantity=quantity)

    def always_fails(self, event):
        if self.owns(product_id):
            raise RuntimeError("broken handler")

    monkeypatch.setattr(ProductProjection, "stock_changed", always_fails)
    parked = []
    for n in range(len(quantities)):
        project_all()
        parked.append(ParkedEvent.objects.get(status=ParkedEvent.Status.PARKED))
        if n < len(quantities) - 1:
            skip_parked(parked[-1].pk)
    monkeypatch.undo()
    return product_id, parked


def record(parked: ParkedEvent) -> tuple:
    return (
        parked.pk,
        parked.projector,
        parked.partition,
        parked.position,
        parked.event_type,
        parked.payload,
        parked.error,
        parked.attempts,
        parked.parked_at,
    )


@both_databases
@pytest.mark.parametrize("from_events", [False, True], ids=["snapshot", "from-events"])
def test_a_skipped_parked_event_stays_on_record_across_a_rebuild(
    monkeypatch, settings, from_events
):
    product_id, (skipped, still_open) = park_stock_changes(monkeypatch, settings, 0, 9)
    skipped.refresh_from_db()

    rebuild(from_events=from_events, batch_size=50, progress=quiet, log=quiet)

    kept = ParkedEvent.objects.get(pk=skipped.pk)
    assert record(kept) == record(skipped)
    assert (kept.status, kept.resolved_at) == (ParkedEvent.Status.SKIPPED, skipped.resolved_at)
    # The rebuilt partition applied the event the open record stood for: it
    # is closed, and no checkpoint is halted any more.
    closed = ParkedEvent.objects.get(pk=still_open.pk)
    assert record(closed) == record(still_open)
    assert closed.status == ParkedEvent.Status.RESOLVED
    assert closed.resolved_at is not None
    assert ParkedEvent.objects.count() == 2
    assert not Checkpoint.objects.filter(halted_at_position__isnull=False).exists()
    listed = io.StringIO()
    call_command("parked_events", "--all", stdout=listed)
    assert f"{skipped.pk:>5} {skipped.projector}[{skipped.partition}] #{skipped.position}" in (
        listed.getvalue()
    )
    assert "skipped: RuntimeError('broken handler')" in listed.getvalue()
    assert ProductReadModel.objects.get(pk=product_id).stock_quantity == 9
    assert_exact()


@both_databases
def test_an_open_record_stays_open_where_the_rebuilt_partition_halted_too(monkeypatch, settings):
    """The shadow's projectors failed on the same event (its partition halted
    at it, with a record of its own) and on another one: the live record
    keeps its id and stays parked, the shadow's duplicate goes, the other is
    added after the live ones."""
    _, (skipped, still_open) = park_stock_changes(monkeypatch, settings, 0, 9)
    other = next(
        event
        for event in Event.objects.filter(event_type="ProductCreated")
        if event.stream_id % settings.PROJECTION_PARTITIONS != still_open.partition
    )
    other_partition = other.stream_id % settings.PROJECTION_PARTITIONS
    create_shadow()
    backfill_from_snapshot(quiet)
    with shadow_alias():
        for partition, position in [
            (still_open.partition, still_open.position),
            (other_partition, other.position),
        ]:
            Checkpoint.objects.filter(projector="products", partition=partition).update(
                halted_at_position=position
            )
        ParkedEvent.objects.create(
            projector="products",
            partition=still_open.partition,
            position=still_open.position,
            transaction_id=still_open.transaction_id,
            event_type=still_open.event_type,
            payload=still_open.payload,
            error="RuntimeError('failed again')",
            traceback="",
            attempts=1,
        )
        ParkedEvent.objects.create(
            projector="products",
            partition=other_partition,
            position=other.position,
            transaction_id=other.transaction_id or 0,
            event_type=other.event_type,
            payload=other.payload,
            error="RuntimeError('new failure')",
            traceback="",
            attempts=1,
        )

    swap(batch_size=50)

    records = list(ParkedEvent.objects.order_by("pk"))
    assert [(p.pk, p.status, p.error) for p in records] == [
        (skipped.pk, ParkedEvent.Status.SKIPPED, skipped.error),
        (still_open.pk, ParkedEvent.Status.PARKED, still_open.error),
        (records[2].pk, ParkedEvent.Status.PARKED, "RuntimeError('new failure')"),
    ]
    assert records[2].pk > still_open.pk
    assert records[2].position == other.position
    assert set(
        Checkpoint.objects.filter(halted_at_position__isnull=False).values_list(
            "partition", "halted_at_position"
        )
    ) == {(still_open.partition, still_open.position), (other_partition, other.position)}
