"""Real Celery workers and run_projectors processes against real PostgreSQL and Redis.

Killed workers, Redis outages and the other failures are in ``tests/chaos``.
"""

import random
import signal
import time

import pytest
from django.db import connections

from projections import tasks
from projections.models import Checkpoint
from tests.projections.history import (
    Writer,
    assert_exact,
    make_users,
    random_command,
    seed_catalog,
)
from tests.projections.processes import (
    database_url,
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


def test_a_worker_keeps_its_database_connections_from_task_to_task(broker, tmp_path):
    """Celery's Django fixup closes every connection around every task
    unless told otherwise: each wake-up would then open two connections
    (the log's and the read models'), a fork of PostgreSQL each."""
    rng = random.Random(61)
    users = make_users()
    seed_catalog(rng, products=4)
    name = f"storefront-worker-{tmp_path.name}"[:63]
    env = process_env(broker.url)
    for var, alias in (("DATABASE_URL", "default"), ("READ_DATABASE_URL", "read")):
        env[var] = f"{database_url(alias)}?application_name={name}"
    worker = start_worker(env, "keeper", tmp_path / "keeper.log")
    backends: set[int] = set()

    def watch_backends() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
            backends.update(pid for (pid,) in cursor.fetchall())

    with running(worker):
        wait_until_caught_up(60)
        watch_backends()
        for _ in range(8):  # each after the last task let go: a task each
            random_command(rng, users)
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                watch_backends()
                time.sleep(0.02)
        wait_until_caught_up(60)
    assert_exact()
    assert 1 <= len(backends) <= 2, f"{len(backends)} connections for 8 wake-ups"
