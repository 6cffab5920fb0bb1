"""verify_projections --fix run again and again while three writers send
mixed commands and a run_projectors process projects them: the read side
ends exact, and a last repair finds nothing left to rewrite."""

import io
import random
import time

import pytest
from django.core.management import call_command

from projections.models import ProductFacts, ProductReadModel, ReviewReadModel
from projections.repair import repair
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, seed_catalog
from tests.projections.processes import (
    kill,
    process_env,
    start_run_projectors,
    wait_for_log,
    wait_until_caught_up,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

REPAIRS = 8


def corrupt_something(rng: random.Random) -> None:
    """A wrong count, a wrong fact, a lost review store entry."""
    row = ProductReadModel.objects.order_by("?").first()
    if row is not None:
        ProductReadModel.objects.filter(pk=row.pk).update(review_count=row.review_count + 2)
    facts = ProductFacts.objects.filter(projector="products").order_by("?").first()
    if facts is not None:
        ProductFacts.objects.filter(pk=facts.pk).update(
            rating_sum=facts.rating_sum + rng.randint(1, 9)
        )
    stored = ReviewReadModel.objects.order_by("?").first()
    if stored is not None:
        stored.delete()


def test_fix_while_commands_flow_leaves_every_store_exact(tmp_path):
    rng = random.Random(47)
    users = make_users(count=12)
    seed_catalog(rng, sellers=4, products=30)
    env = process_env("")  # no broker: run_projectors wakes on NOTIFY
    log = tmp_path / "run_projectors.log"
    loop = start_run_projectors(env, log, "--threads", "2")
    writers = [Writer(seed=n, users=users, pause=0.01) for n in range(3)]
    repaired = 0
    try:
        wait_for_log(log, "Projecting")
        for writer in writers:
            writer.start()
        for round_ in range(REPAIRS):
            time.sleep(0.6)
            if round_ % 2 == 0:
                corrupt_something(rng)
            report = io.StringIO()
            call_command("verify_projections", "--fix", stdout=report)
            assert "the read side is exact" in report.getvalue(), report.getvalue()
            repaired += 1
        for writer in writers:
            writer.finish()
        wait_until_caught_up(60)
        assert loop.poll() is None
    finally:
        for writer in writers:
            writer.stop.set()
        kill(loop)
    commands = sum(writer.commands for writer in writers)
    assert commands > 100, f"only {commands} commands ran"
    assert_no_drift()
    assert repair().total == 0, "a repair after the traffic still found something to rewrite"
    tally.count("verify --fix runs while commands flowed", repaired)
    tally.count("commands sent during the repairs", commands)
