"""The seller projector is partitioned by product too: each partition applies
its own products' events to their sellers' rows, which every partition
shares, and the first partition to reach a seller's own event applies it."""

import random
import threading
from decimal import Decimal

import pytest
from django.db import connections

from catalog import services as catalog
from catalog.models import Product
from eventstore import eventlog
from eventstore.eventlog import KeyedSlice
from projections.engine import Outcome, catch_up, ensure_checkpoints, run_batch
from projections.models import Checkpoint, ProductFacts, SellerReadModel
from projections.projectors.sellers import SellerProjection
from projections.registry import PROJECTIONS, project_all
from projections.resize import resize
from reviews import services as reviews
from tests.projections.history import (
    assert_exact,
    assert_seller_layout,
    make_users,
    random_command,
    seed_catalog,
)

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def _seller_with_a_product_on_each_partition() -> tuple[int, Product, Product]:
    seller = catalog.seller_register(name="Shared", reputation="1.00")
    made = [
        catalog.product_create(seller_id=seller.pk, name=f"P{n}", price="5.00") for n in range(4)
    ]
    even = next(p for p in made if p.pk % 2 == 0)
    odd = next(p for p in made if p.pk % 2 == 1)
    return seller.pk, even, odd


@both_databases
def test_each_seller_partition_applies_only_its_products_events(settings):
    settings.PROJECTION_PARTITIONS = 4
    rng = random.Random(31)
    users = make_users()
    seed_catalog(rng)
    for _ in range(120):
        random_command(rng, users)
    project_all()
    assert_exact()
    assert_seller_layout(4)

    events = eventlog.read_events(eventlog.START, 100_000)
    for partition in range(4):
        mine = KeyedSlice("product_id", 4, partition)
        checkpoint = Checkpoint.objects.get(projector="sellers", partition=partition)
        assert checkpoint.events_applied == sum(mine.holds(e.payload) for e in events)
        assert checkpoint.position == events[-1].position
    facts = ProductFacts.objects.filter(projector="sellers")
    assert facts.count() == Product.objects.count()  # each product's once


@both_databases
def test_a_seller_event_is_applied_by_the_first_partition_to_reach_it(settings):
    """Partition 0 runs ahead through two reputation changes; partition 1,
    behind, then reaches the registration and the first change: neither
    takes the row back (the registration would reset its counts, the change
    its reputation)."""
    settings.PROJECTION_PARTITIONS = 2
    seller_id, even, odd = _seller_with_a_product_on_each_partition()
    users = make_users(2)
    reviews.review_add(product_id=odd.pk, author=users[0], rating=4, body="Fine enough.")
    catalog.seller_change_reputation(seller_id=seller_id, reputation="2.00")
    first_change = eventlog.head()
    catalog.seller_change_reputation(seller_id=seller_id, reputation="3.00")
    reviews.review_add(product_id=even.pk, author=users[1], rating=2, body="Meh, not great.")
    sellers = PROJECTIONS["sellers"]
    ensure_checkpoints(sellers)

    catch_up(sellers, 0)
    row = SellerReadModel.objects.get(pk=seller_id)
    assert (row.reputation, row.review_count, row.rating_sum) == (Decimal("3.00"), 1, 2)
    catch_up(sellers, 1, stop_at=first_change)
    row = SellerReadModel.objects.get(pk=seller_id)
    assert row.reputation == Decimal("3.00")
    assert (row.product_count, row.review_count, row.rating_sum) == (4, 2, 6)
    catch_up(sellers, 1)
    project_all()
    assert_exact()


@pytest.mark.postgres
@both_databases
def test_two_partitions_moving_one_seller_take_turns(settings, monkeypatch):
    """Partition 0's batch has read the seller's row and not yet written it
    back when partition 1's batch on the same seller starts: partition 1
    waits for the seller's lock and reads the row partition 0 committed, so
    neither review is lost."""
    settings.PROJECTION_PARTITIONS = 2
    seller_id, even, odd = _seller_with_a_product_on_each_partition()
    project_all()
    users = make_users(2)
    reviews.review_add(product_id=even.pk, author=users[0], rating=5, body="Great product.")
    reviews.review_add(product_id=odd.pk, author=users[1], rating=1, body="Bad product.")

    first_read = threading.Event()
    second_done = threading.Event()
    real_flush = SellerProjection.flush

    def slow_flush(self: SellerProjection) -> None:
        if self.partition == 0:
            first_read.set()
            second_done.wait(1.0)  # partition 1's batch finishes meanwhile, if it can
        real_flush(self)

    monkeypatch.setattr(SellerProjection, "flush", slow_flush)
    results: dict[int, Outcome] = {}

    def batch(partition: int) -> None:
        try:
            results[partition] = run_batch(PROJECTIONS["sellers"], partition).outcome
        finally:
            if partition == 1:
                second_done.set()
            connections.close_all()

    first = threading.Thread(target=batch, args=(0,))
    first.start()
    assert first_read.wait(10)
    second = threading.Thread(target=batch, args=(1,))
    second.start()
    first.join(10)
    second.join(10)
    assert results == {0: Outcome.APPLIED, 1: Outcome.APPLIED}
    row = SellerReadModel.objects.get(pk=seller_id)
    assert (row.review_count, row.rating_sum) == (2, 6)
    project_all()
    assert_exact()


@both_databases
def test_the_seller_projector_splits_and_merges_while_commands_go_on(settings):
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(32)
    users = make_users()
    seed_catalog(rng)
    project_all()
    for to in (4, 8, 2, 1, 2):
        for _ in range(25):
            random_command(rng, users)
        catch_up(PROJECTIONS["sellers"], 0)  # one partition ahead of the others
        resize("sellers", to)
        assert_seller_layout(to)
        for _ in range(10):
            random_command(rng, users)
        project_all()
        assert_exact()
    assert PROJECTIONS["products"].partition_count() == 2  # the other projector kept its own
