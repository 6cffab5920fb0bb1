"""SIGKILL the only Celery worker again and again while it projects."""

import random
import signal
import time

import pytest

from projections import tasks
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, seed_catalog
from tests.projections.processes import (
    batches_running,
    kill,
    process_env,
    start_beat,
    start_worker,
    wait_until_caught_up,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

KILLS = 12


def kill_when_busy(worker, timeout: float) -> bool:
    """SIGKILL ``worker`` as soon as a batch holds its partition lock (or at
    the timeout); whether a batch was seen running just before the kill."""
    deadline = time.monotonic() + timeout
    busy = False
    while time.monotonic() < deadline and not busy:
        busy = batches_running() > 0
        if not busy:
            time.sleep(0.005)
    kill(worker, signal.SIGKILL)
    return busy


def test_a_worker_killed_mid_batch_again_and_again_loses_and_doubles_nothing(broker, tmp_path):
    rng = random.Random(21)
    users = make_users()
    seed_catalog(rng, products=30)
    # Small batches: the worker spends its life inside one.
    env = process_env(broker.url, PROJECTION_BATCH_SIZE="20")
    writer = Writer(seed=22, users=users, pause=0.002)
    writer.start()
    beat = start_beat(env, tmp_path)
    worker = start_worker(env, "victim0", tmp_path / "worker.log")
    kills = mid_batch = 0
    try:
        # Kill until KILLS kills have landed mid-batch; a kill that found no
        # batch running (a slow restart on a busy machine) does not count.
        while mid_batch < KILLS and kills < KILLS + 6:
            tasks.wake_after_commit()
            mid_batch += kill_when_busy(worker, timeout=10)
            kills += 1
            worker = start_worker(env, f"victim{kills}", tmp_path / "worker.log")
        writer.finish()
        tasks.sweep()
        wait_until_caught_up(60)
    finally:
        writer.stop.set()
        kill(worker)
        kill(beat)
    assert writer.commands > 100
    # A lock seen held just before the signal: the kill landed in a batch.
    assert mid_batch >= 10, f"only {mid_batch} of {kills} kills found a batch running"
    assert_no_drift()
    tally.count("Celery worker SIGKILLs (mid-batch)", mid_batch)
    tally.count("Celery worker SIGKILLs (total)", kills)
