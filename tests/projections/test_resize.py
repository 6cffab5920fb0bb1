"""Resizing a projector online (``projections.resize``): splits and merges
move checkpoints, facts, rows and links together, a merge first brings every
partition to one place, and the read side stays exact."""

import io
import random
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connections, transaction

from catalog import services as catalog
from catalog.models import Product
from eventstore import eventlog
from eventstore.models import Event
from projections import resize as resize_module
from projections.engine import Outcome, catch_up, hold_partition, run_batch
from projections.engine.failures import record_failure
from projections.models import Checkpoint, ParkedEvent
from projections.projectors.products import ProductProjection
from projections.rebuild import rebuild_lock
from projections.registry import PROJECTIONS, project_all
from projections.resize import ResizeRefused, resize
from queries import consistency
from tests.projections.history import (
    assert_exact,
    assert_layout,
    make_users,
    random_command,
    seed_catalog,
)

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def traffic(rng: random.Random, users: list, commands: int) -> None:
    for _ in range(commands):
        random_command(rng, users)


@both_databases
def test_splits_and_merges_keep_the_read_side_exact(settings):
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(61)
    users = make_users()
    seed_catalog(rng, products=16)
    traffic(rng, users, 80)
    project_all()
    steps = resize("products", 8)
    assert [(step.before, step.after) for step in steps] == [(2, 4), (4, 8)]
    assert_layout(8)
    assert_exact()  # nothing was replayed: the rows were already right

    traffic(rng, users, 80)
    project_all()
    assert_exact()
    last = Event.objects.latest("position").position
    assert set(Checkpoint.objects.values_list("position", flat=True)) == {last}
    # Each product event applied once: the eight split the work.
    applied = sum(
        Checkpoint.objects.filter(projector="products").values_list("events_applied", flat=True)
    )

    traffic(rng, users, 60)
    catch_up(PROJECTIONS["products"], 3)  # the partitions stand apart: the merges align them
    steps = resize("products", 1)
    assert [(step.before, step.after) for step in steps] == [(8, 4), (4, 2), (2, 1)]
    assert steps[0].aligned > 0
    assert_layout(1)
    project_all()
    assert_exact()
    assert Checkpoint.objects.get(projector="products").events_applied > applied


@both_databases
def test_a_merge_takes_every_partition_to_the_furthest_one_and_no_further(settings):
    settings.PROJECTION_PARTITIONS = 4
    rng = random.Random(62)
    users = make_users()
    seed_catalog(rng, products=12)
    traffic(rng, users, 40)
    products = PROJECTIONS["products"]
    project_all()
    traffic(rng, users, 40)
    catch_up(products, 1)  # only partition 1 goes on
    furthest = Checkpoint.objects.get(projector="products", partition=1).position
    traffic(rng, users, 20)  # events after it: the merge leaves them to the projectors

    step = resize("products", 2)[0]
    assert step.aligned > 0
    assert set(
        Checkpoint.objects.filter(projector="products").values_list("position", flat=True)
    ) == {furthest}
    assert_layout(2)
    project_all()
    assert_exact()


@both_databases
def test_an_instance_kept_across_a_resize_applies_with_the_new_count(settings):
    """A runner keeps an instance per partition from pass to pass: the next
    batch after a resize gives it the checkpoint's count (without that, it
    would go on reading and owning by the old one)."""
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(63)
    users = make_users()
    seed_catalog(rng, products=12)
    products = PROJECTIONS["products"]
    kept = {partition: ProductProjection(partition, 2) for partition in range(8)}
    catch_up(products, 0, projection=kept[0])
    catch_up(products, 1, projection=kept[1])
    catch_up(PROJECTIONS["sellers"], 0)
    resize("products", 4)
    traffic(rng, users, 60)
    for partition in range(4):
        catch_up(products, partition, projection=kept[partition])
    assert [kept[partition].partitions for partition in range(4)] == [4, 4, 4, 4]
    project_all()
    assert_exact()


@both_databases
def test_a_merged_away_partition_is_gone(settings):
    settings.PROJECTION_PARTITIONS = 4
    seed_catalog(random.Random(64), products=6)
    project_all()
    resize("products", 2)
    products = PROJECTIONS["products"]
    assert run_batch(products, 3).outcome is Outcome.GONE
    assert catch_up(products, 3) == 0
    assert not Checkpoint.objects.filter(projector="products", partition=3).exists()
    assert products.partition_count() == 2


@both_databases
def test_a_stale_guess_of_a_merged_away_partition_is_gone_too(settings):
    """A runner or a Celery claim keeps each partition's checkpoint as its
    last batch left it (``known``): after a merge that guess still names the
    partition, and the batch finds it gone (it once answered BUSY for ever)."""
    settings.PROJECTION_PARTITIONS = 4
    seed_catalog(random.Random(70), products=6)
    project_all()
    guess = Checkpoint.objects.get(projector="products", partition=3)
    resize("products", 2)
    product = next(p for p in Product.objects.order_by("pk") if p.pk % 4 == 3)
    catalog.product_change_price(product_id=product.pk, price=product.price + 1)
    assert run_batch(PROJECTIONS["products"], 3, known=guess).outcome is Outcome.GONE


@both_databases
def test_a_failure_counted_after_a_resize_came_between_is_dropped(settings):
    """A batch fails and rolls back; a resize commits before its failure is
    counted: the event may be another partition's now, or the partition gone.
    Nothing is counted (it once raised for a gone partition, ending the
    runner, and counted a failure against a partition no longer its owner)."""
    settings.PROJECTION_PARTITIONS = 4
    seed_catalog(random.Random(71), products=6)
    project_all()
    event = eventlog.read_events(eventlog.START, 1)[0]
    Checkpoint.objects.update(transaction_id=0, position=0)  # the event lies ahead of each
    resize("products", 2)
    record_failure("products", 3, 4, event, ValueError("gone"))
    record_failure("products", 1, 4, event, ValueError("counted with 4"))
    assert list(Checkpoint.objects.values_list("failures", flat=True)) == [0] * 3
    record_failure("products", 1, 2, event, ValueError("counted with 2"))
    assert Checkpoint.objects.get(projector="products", partition=1).failures == 1


@pytest.mark.postgres
@both_databases
def test_a_step_lets_go_of_a_partition_a_batch_keeps_and_tries_again(settings, monkeypatch):
    """A step waits at most LOCK_WAIT_SECONDS for each partition, since the
    ones it holds already stand still: then it lets go of all of them and
    tries again; a partition kept through every attempt refuses the resize."""
    settings.PROJECTION_PARTITIONS = 2
    seed_catalog(random.Random(72), products=6)
    project_all()
    monkeypatch.setattr(resize_module, "LOCK_WAIT_SECONDS", 1)
    monkeypatch.setattr(resize_module, "STEP_ATTEMPTS", 2)

    def keep_partition(seconds: float) -> threading.Thread:
        taken = threading.Event()

        def keep() -> None:
            try:
                with transaction.atomic(using="read"):
                    hold_partition("products", 1)
                    taken.set()
                    time.sleep(seconds)
            finally:
                connections.close_all()

        thread = threading.Thread(target=keep)
        thread.start()
        assert taken.wait(5)
        return thread

    keeper = keep_partition(3.0)  # longer than both attempts
    started = time.monotonic()
    with pytest.raises(ResizeRefused, match="kept a partition"):
        resize("products", 4)
    assert time.monotonic() - started < 2.9
    keeper.join()
    assert Checkpoint.objects.filter(projector="products").count() == 2

    keeper = keep_partition(1.5)  # let go during the second attempt's wait
    assert [(step.before, step.after) for step in resize("products", 4)] == [(2, 4)]
    keeper.join()
    assert_layout(4)


@both_databases
def test_a_token_waits_for_the_partitions_a_split_made(settings):
    settings.PROJECTION_PARTITIONS = 1
    rng = random.Random(65)
    users = make_users()
    seed_catalog(rng, products=8)
    project_all()
    resize("products", 2)
    traffic(rng, users, 30)
    products = PROJECTIONS["products"]
    catch_up(products, 0)
    catch_up(PROJECTIONS["sellers"], 0)
    last = Event.objects.latest("position")
    token = consistency.LogPosition(last.transaction_id, last.position)
    behind = Checkpoint.objects.get(projector="products", partition=1)
    assert (behind.transaction_id, behind.position) < (token.transaction_id, token.position)
    assert not consistency.is_applied(token)  # partition 1, made by the split, has not passed it
    project_all()
    assert consistency.is_applied(token)


@both_databases
@pytest.mark.parametrize(
    ("projector", "to", "why"),
    [
        ("products", 3, "power of two"),
        ("products", 6, "power of two"),
        ("products", 0, "from 1 to 256"),
        ("products", 512, "from 1 to 256"),
        ("sellers", 2, "not a partitioned projector"),
        ("nobody", 2, "not a partitioned projector"),
    ],
)
def test_a_count_it_cannot_reach_is_refused(settings, projector, to, why):
    settings.PROJECTION_PARTITIONS = 2
    with pytest.raises(ResizeRefused, match=why):
        resize(projector, to)
    assert set(Checkpoint.objects.values_list("partitions", flat=True)) <= {2}


@both_databases
def test_a_parked_event_refuses_the_resize_and_nothing_moves(settings):
    settings.PROJECTION_PARTITIONS = 2
    seed_catalog(random.Random(66), products=6)
    project_all()
    event = Event.objects.order_by("position")[0]
    ParkedEvent.objects.create(
        projector="products",
        partition=0,
        position=event.position,
        transaction_id=event.transaction_id,
        event_type=event.event_type,
        payload=event.payload,
        error="boom",
        traceback="",
        attempts=5,
    )
    before = list(Checkpoint.objects.order_by("projector", "partition").values())
    with pytest.raises(ResizeRefused, match="parked events"):
        resize("products", 4)
    assert list(Checkpoint.objects.order_by("projector", "partition").values()) == before


@both_databases
def test_a_resize_is_refused_while_a_rebuild_runs(settings):
    settings.PROJECTION_PARTITIONS = 2
    seed_catalog(random.Random(67), products=4)
    project_all()
    with rebuild_lock(), pytest.raises(ResizeRefused, match="rebuild"):
        resize("products", 4)
    assert Checkpoint.objects.filter(projector="products").count() == 2


@both_databases
def test_a_rebuild_keeps_the_resized_layout(settings):
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(68)
    users = make_users()
    seed_catalog(rng, products=10)
    traffic(rng, users, 40)
    project_all()
    resize("products", 4)
    traffic(rng, users, 20)
    call_command("rebuild_projections", stdout=io.StringIO())
    assert_layout(4)
    project_all()
    assert_exact()


@both_databases
def test_the_command_resizes_and_says_why_it_refuses(settings):
    settings.PROJECTION_PARTITIONS = 2
    seed_catalog(random.Random(69), products=4)
    project_all()
    out = io.StringIO()
    call_command("resize_partitions", "4", stdout=out)
    assert "products: 2 -> 4 partitions" in out.getvalue()
    with pytest.raises(CommandError, match="power of two"):
        call_command("resize_partitions", "6")
    out = io.StringIO()
    call_command("resize_partitions", "4", stdout=out)
    assert "has 4 partitions already" in out.getvalue()
    assert_layout(4)
