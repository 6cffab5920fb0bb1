"""Real Celery workers and run_projectors processes against real PostgreSQL and Redis.

Killed workers, Redis outages and the other failures are in ``tests/chaos``.
"""

import random
import signal
import time

import pytest

from projections import tasks
from projections.models import Checkpoint
from tests.projections.history import Writer, assert_exact, make_users, seed_catalog
from tests.projections.processes import (
    kill,
    process_env,
    running,
    start_run_projectors,
    start_worker,
    wait_until_caught_up,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]


def test_two_workers_share_four_partitions_and_keep_every_products_order(
    broker, tmp_path, settings
):
    assert settings.PROJECTION_PARTITIONS == 4
    rng = random.Random(41)
    users = make_users()
    seed_catalog(rng, products=16)
    env = process_env(broker.url, PROJECTION_BATCH_SIZE="10")
    first = start_worker(env, "first", tmp_path / "first.log")
    second = start_worker(env, "second", tmp_path / "second.log")
    owners: set[str] = set()
    with running(first, second):
        writer = Writer(seed=42, users=users, pause=0.002)
        writer.start()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            owners |= set(Checkpoint.objects.values_list("owner", flat=True))
            time.sleep(0.1)
        writer.finish()
        tasks.sweep()
        wait_until_caught_up(60)
        owners |= set(Checkpoint.objects.values_list("owner", flat=True))
    pids = {owner.rsplit(":", 1)[-1] for owner in owners if owner}
    assert {str(first.pid), str(second.pid)} <= pids, "both workers took partitions"
    assert_exact()


def test_run_projectors_stops_cleanly_on_sigterm_and_its_successor_finishes(broker, tmp_path):
    rng = random.Random(51)
    users = make_users()
    seed_catalog(rng, products=10)
    env = process_env(broker.url)
    loop = start_run_projectors(env, tmp_path / "loop.log")
    writer = Writer(seed=52, users=users)
    writer.start()
    log = tmp_path / "loop.log"
    deadline = time.monotonic() + 30
    while "Projecting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)  # its signal handlers are installed once it says so
    time.sleep(1)
    kill(loop, signal.SIGTERM)
    assert loop.returncode == 0, (tmp_path / "loop.log").read_text()
    assert "Stopped." in (tmp_path / "loop.log").read_text()
    successor = start_run_projectors(env, tmp_path / "loop.log")
    with running(successor):
        writer.finish()
        wait_until_caught_up(60)
    assert_exact()
