"""verify_projections --fix makes every store of the read side exact, also
with events the projectors have not applied yet."""

import io
import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog import services as catalog
from projections.engine import run_batch
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
)
from projections.registry import PROJECTIONS, project_all
from projections.repair import RepairRefused, repair
from tests.projections.history import assert_exact, make_users, random_command, seed_catalog

pytestmark = pytest.mark.django_db(databases=["default", "read"], transaction=True)


def corrupt_every_store() -> None:
    """What a bug, a bad restore or a hand edit could leave behind."""
    row = ProductReadModel.objects.order_by("pk")[0]
    ProductReadModel.objects.filter(pk=row.pk).update(review_count=row.review_count + 3)
    facts = ProductFacts.objects.filter(projector="products").order_by("pk")[0]
    ProductFacts.objects.filter(pk=facts.pk).update(rating_sum=facts.rating_sum + 5, name="Wrong")
    ProductFacts.objects.filter(projector="sellers").update(is_active=False)
    SellerFacts.objects.update(reputation="0.01")
    stored = list(ReviewReadModel.objects.order_by("review_id").values_list("pk", flat=True))
    ReviewReadModel.objects.filter(pk__in=stored[::3]).delete()
    ReviewReadModel.objects.create(review_id=10**9, product_id=row.pk, created_at=row.updated_at)
    link = RelatedLink.objects.order_by("pk").first()
    if link is not None:
        link.delete()
    RelatedLink.objects.create(source_id=row.pk, target_id=10**9, partition=0)


def test_fix_with_events_not_yet_applied_counts_each_event_once():
    """The old repair wrote today's truth into rows whose checkpoint lagged,
    and the projectors then applied the pending events on top of it."""
    rng = random.Random(31)
    users = make_users()
    seed_catalog(rng, products=16)
    for _ in range(80):
        random_command(rng, users)
    project_all()
    corrupt_every_store()
    for _ in range(60):  # recorded, not projected yet
        random_command(rng, users)

    out = io.StringIO()
    call_command("verify_projections", "--fix", stdout=out)
    for _ in range(80):  # every store is read again: fan-out, refills, facts
        random_command(rng, users)
    project_all()

    assert "the read side is exact" in out.getvalue()
    assert_exact()
    assert repair().total == 0, "a second repair found more to rewrite"


def test_fix_repairs_every_store_the_projectors_read():
    rng = random.Random(32)
    users = make_users()
    seed_catalog(rng, products=16)
    for _ in range(120):
        random_command(rng, users)
    project_all()
    corrupt_every_store()

    repaired = repair()

    assert repaired.counts["product rows"] == 1
    assert (
        repaired.counts["product facts"]
        >= 1 + ProductFacts.objects.filter(projector="sellers").count() // 2
    )
    assert repaired.counts["seller facts"] == SellerFacts.objects.count()
    assert repaired.counts["review store"] >= 2
    assert repaired.counts["related links"] >= 1
    assert repair().total == 0
    for _ in range(80):
        random_command(rng, users)
    project_all()
    assert_exact()


def test_a_halted_partition_refuses_the_repair_and_nothing_is_written():
    rng = random.Random(33)
    users = make_users()
    seed_catalog(rng)
    for _ in range(20):
        random_command(rng, users)
    project_all()
    Checkpoint.objects.filter(projector="products", partition=0).update(halted_at_position=1)
    row = ProductReadModel.objects.order_by("pk")[0]
    ProductReadModel.objects.filter(pk=row.pk).update(review_count=row.review_count + 3)

    with pytest.raises(CommandError, match=r"products\[0\] halted behind a parked event"):
        call_command("verify_projections", "--fix", stdout=io.StringIO())

    assert ProductReadModel.objects.get(pk=row.pk).review_count == row.review_count + 3
    with pytest.raises(RepairRefused):
        repair()


def test_a_batch_read_before_a_repair_is_not_applied_after_it():
    """A runner reads the log from the checkpoint it knows, then takes the
    partition: if a repair moved the checkpoint's snapshot meanwhile, what it
    read is stale and must be read again."""
    rng = random.Random(34)
    users = make_users()
    seed_catalog(rng)
    project_all()
    products = PROJECTIONS["products"]
    known = {
        partition: Checkpoint.objects.get(projector="products", partition=partition)
        for partition in range(products.partition_count())
    }
    product = catalog.product_change_stock(
        product_id=ProductReadModel.objects.order_by("pk")[0].pk, quantity=7
    )
    for _ in range(20):
        random_command(rng, users)

    repair()
    for partition in range(products.partition_count()):
        run_batch(products, partition, known=known.get(partition))
    project_all()

    assert ProductReadModel.objects.get(pk=product.pk).stock_quantity == 7
    assert_exact()
