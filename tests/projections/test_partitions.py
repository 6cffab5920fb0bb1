"""Partitions divide the work: a product partition reads and applies only its
own products' events (and every seller's), keeps facts of its own products
only, and reaches other partitions' rows through the fan-out and the lists."""

import random
from decimal import Decimal

import psycopg
import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import services as catalog
from catalog.models import Product
from eventstore import eventlog
from eventstore.eventlog import KeyedSlice
from eventstore.listen import connection_params
from eventstore.models import Event
from eventstore.tokens import read_token
from kernel.http import run_command
from projections.engine import Outcome, catch_up, ensure_checkpoints, run_batch
from projections.engine.checkpoints import lock_key
from projections.models import Checkpoint, ProductFacts, ProductReadModel
from projections.projectors.products import ProductProjection, partition_of
from projections.registry import PROJECTIONS, project_all
from queries import consistency
from tests.projections.history import assert_exact, make_users, random_command, seed_catalog

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def _products_on_two_partitions(count: int) -> tuple[Product, Product]:
    """A product, and a product of another partition."""
    products = list(Product.objects.order_by("pk"))
    first = products[0]
    other = next(p for p in products if partition_of(p.pk, count) != partition_of(first.pk, count))
    return first, other


@both_databases
def test_each_partition_applies_only_its_slice_and_keeps_only_its_facts(settings):
    settings.PROJECTION_PARTITIONS = 4
    rng = random.Random(3)
    users = make_users()
    seed_catalog(rng)
    for _ in range(120):
        random_command(rng, users)
    project_all()
    assert_exact()

    events = eventlog.read_events(eventlog.START, 100_000)
    for partition in range(4):
        mine = KeyedSlice("product_id", 4, partition)
        checkpoint = Checkpoint.objects.get(projector="products", partition=partition)
        assert checkpoint.events_applied == sum(mine.holds(e.payload) for e in events)
        assert checkpoint.position == events[-1].position  # it passed every other event
        facts = ProductFacts.objects.filter(projector="products", partition=partition)
        assert {pk % 4 for pk in facts.values_list("product_id", flat=True)} <= {partition}
    # Together the product partitions apply each product event once, and
    # each seller event once each.
    applied = sum(
        Checkpoint.objects.filter(projector="products").values_list("events_applied", flat=True)
    )
    sellers = sum(e.stream_type == "seller" for e in events)
    assert applied == len(events) - sellers + 4 * sellers


@both_databases
def test_a_list_waits_for_the_owner_of_a_product_it_shows(settings):
    settings.PROJECTION_PARTITIONS = 2
    seller = catalog.seller_register(name="S", reputation="1.00")
    first = catalog.product_create(seller_id=seller.pk, name="First", price="1.00")
    second = catalog.product_create(seller_id=seller.pk, name="Second", price="2.00")
    catalog.product_set_recommendations(product_id=first.pk, related_ids=[second.pk])
    products = PROJECTIONS["products"]
    ensure_checkpoints(products)
    lister, owner = partition_of(first.pk, 2), partition_of(second.pk, 2)
    assert lister != owner

    # The list's partition applies the creation, then waits before the list.
    assert run_batch(products, lister).outcome is Outcome.APPLIED
    assert run_batch(products, lister).outcome is Outcome.WAITING
    assert ProductReadModel.objects.get(pk=first.pk).related_products == []
    catch_up(products, owner)
    catch_up(products, lister)
    catch_up(PROJECTIONS["sellers"], 0)
    shown = ProductReadModel.objects.get(pk=first.pk).related_products
    assert [(entry["id"], entry["name"]) for entry in shown] == [(second.pk, "Second")]
    assert_exact()


@both_databases
def test_a_lists_token_waits_for_the_owners_of_the_products_it_shows(settings):
    """A list is written from what the shown products' owners know when its
    partition applies it. Its command's token named only the listing
    product, so it passed on that partition alone while the row showed a
    price the log had already changed."""
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(8)
    seed_catalog(rng, products=6)
    first, other = _products_on_two_partitions(2)
    project_all()
    catalog.product_change_price(product_id=other.pk, price=Decimal("7.77"))
    _, raw = run_command(
        lambda: catalog.product_set_recommendations(product_id=first.pk, related_ids=[other.pk])
    )
    token = read_token(raw)[0]
    products = PROJECTIONS["products"]

    catch_up(products, partition_of(first.pk, 2))  # the owner of the other is behind
    entry = ProductReadModel.objects.get(pk=first.pk).related_products[0]
    assert entry["id"] == other.pk
    assert entry["price"] != "7.77"
    assert not consistency.is_applied(token.position, keys=token.keys)

    catch_up(products, partition_of(other.pk, 2))
    entry = ProductReadModel.objects.get(pk=first.pk).related_products[0]
    assert entry["price"] == "7.77"
    assert consistency.is_applied(token.position, keys=token.keys)
    project_all()
    assert_exact()


@both_databases
def test_an_owner_changes_the_entry_on_rows_of_other_partitions(settings):
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(8)
    seed_catalog(rng, products=6)
    first, other = _products_on_two_partitions(2)
    catalog.product_set_recommendations(product_id=first.pk, related_ids=[other.pk])
    project_all()
    catalog.product_change_price(product_id=other.pk, price=Decimal("7.77"))
    products = PROJECTIONS["products"]
    # Only the other product's partition runs: it rewrites the first's list.
    catch_up(products, partition_of(other.pk, 2))
    entry = ProductReadModel.objects.get(pk=first.pk).related_products[0]
    assert (entry["id"], entry["price"]) == (other.pk, "7.77")
    project_all()
    assert_exact()


@both_databases
def test_a_kept_row_takes_the_list_another_partition_wrote_before_writing_back(settings):
    """A partition that keeps its rows between batches must not write back a
    list another partition's fan-out changed meanwhile (a lost update)."""
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(9)
    seed_catalog(rng, products=6)
    first, other = _products_on_two_partitions(2)
    catalog.product_set_recommendations(product_id=first.pk, related_ids=[other.pk])
    project_all()
    products = PROJECTIONS["products"]
    lister = ProductProjection(partition_of(first.pk, 2), 2)
    lister.keep_rows = True
    catalog.product_change_stock(product_id=first.pk, quantity=11)
    assert run_batch(products, lister.partition, projection=lister).applied == 1
    assert first.pk in lister.rows  # kept, list and all

    catalog.product_change_price(product_id=other.pk, price=Decimal("8.88"))
    catch_up(products, partition_of(other.pk, 2))  # the owner rewrites the list
    catalog.product_change_stock(product_id=first.pk, quantity=12)
    assert run_batch(products, lister.partition, projection=lister).applied == 1

    row = ProductReadModel.objects.get(pk=first.pk)
    assert row.stock_quantity == 12
    assert row.related_products[0]["price"] == "8.88"
    project_all()
    assert_exact()


@both_databases
def test_a_retried_event_of_a_slice_is_checked_against_the_slice(settings):
    """A single event handed in again applies only when it is the slice's next
    event, however many events of other slices lie between."""
    settings.PROJECTION_PARTITIONS = 4
    rng = random.Random(4)
    seed_catalog(rng, products=8)
    ensure_checkpoints(PROJECTIONS["products"])
    product = Product.objects.order_by("pk")[0]
    partition = partition_of(product.pk, 4)
    events = eventlog.read_events(eventlog.START, 1000)
    own = [e for e in events if e.payload.get("product_id") == product.pk]
    sellers = [e for e in events if e.stream_type == "seller"]
    assert Event.objects.count() > len(own) + len(sellers) + 1
    products = PROJECTIONS["products"]
    # Not the next one: the sellers' events come first.
    assert run_batch(products, partition, events=own).outcome is Outcome.BUSY
    assert run_batch(products, partition, events=sellers).outcome is Outcome.APPLIED
    assert run_batch(products, partition, events=own[:1]).outcome is Outcome.APPLIED
    assert run_batch(products, partition, events=own[:1]).outcome is Outcome.BUSY  # again


@pytest.mark.postgres
@both_databases
def test_a_partition_with_nothing_of_its_own_passes_over_in_one_statement_unless_busy(settings):
    """Most batches of a partition among many find only other slices' events
    and move the checkpoint (``checkpoints.pass_over``): one statement, which
    still takes the partition's lock and checks the checkpoint it was given."""
    settings.PROJECTION_PARTITIONS = 2
    seed_catalog(random.Random(5), products=4)
    project_all()
    product = next(p for p in Product.objects.all() if partition_of(p.pk, 2) == 0)
    catalog.product_change_stock(product_id=product.pk, quantity=41)
    peek = Checkpoint.objects.get(projector="products", partition=1)
    last = Event.objects.order_by("-position").first()
    assert last is not None

    with psycopg.connect(**connection_params("read")) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s, 1)", [lock_key("products")])
        busy = run_batch(ProductProjection, 1, known=peek)
    assert busy.outcome is Outcome.BUSY
    assert Checkpoint.objects.get(projector="products", partition=1).position == peek.position

    with CaptureQueriesContext(connections["read"]) as queries:
        passed = run_batch(ProductProjection, 1, known=peek)
    assert (passed.outcome, passed.applied) == (Outcome.APPLIED, 0)
    assert passed.checkpoint is not None
    assert len(queries) == 1
    moved = Checkpoint.objects.get(projector="products", partition=1)
    assert moved.position == last.position == passed.checkpoint.position
    assert moved.updated_at == passed.checkpoint.updated_at  # the next batch's guess holds

    # A guess the checkpoint no longer matches (a repair touched it) takes
    # the ordinary path, which looks again.
    catalog.product_change_stock(product_id=product.pk, quantity=42)
    Checkpoint.objects.filter(projector="products", partition=1).update(updated_at=timezone.now())
    again = run_batch(ProductProjection, 1, known=passed.checkpoint)
    assert (again.outcome, again.applied) == (Outcome.APPLIED, 0)
    assert Checkpoint.objects.get(projector="products", partition=1).position > last.position
