"""Real Celery workers and run_projectors processes against real PostgreSQL and Redis."""

import random
import signal
import threading
import time

import pytest
from django.db import connections
from kombu import pools as kombu_pools

from projections import tasks
from projections.models import Checkpoint, Event
from tests.projections.history import assert_exact, make_users, random_command, seed_catalog
from tests.projections.processes import (
    RedisServer,
    caught_up,
    kill,
    process_env,
    running,
    start_beat,
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


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server, settings):
    """Point this process's nudges at the private Redis."""
    from config.celery_app import app

    def reset_connections() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None
        kombu_pools.reset()
        tasks._redis.cache_clear()

    keys = ("broker_url", "broker_read_url", "broker_write_url")
    original = {key: app.conf[key] for key in keys}
    settings.CELERY_BROKER_URL = redis_server.url
    app.conf.update(dict.fromkeys(keys, redis_server.url))
    reset_connections()
    yield redis_server
    app.conf.update(original)
    reset_connections()


class Writer(threading.Thread):
    """Runs random commands until stopped; every command must succeed or be refused."""

    def __init__(self, seed: int, users: list, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.users = users
        self.pause = pause
        self.stop = threading.Event()
        self.commands = 0
        self.errors: list[BaseException] = []
        self.slowest = 0.0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                random_command(self.rng, self.users)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.commands += 1
                time.sleep(self.pause)
        except BaseException as error:  # surfaced by the test
            self.errors.append(error)
        finally:
            connections.close_all()

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        assert not self.errors, self.errors


def test_workers_killed_mid_batch_again_and_again_still_project_exactly(broker, tmp_path):
    rng = random.Random(21)
    users = make_users()
    seed_catalog(rng, products=30)
    env = process_env(broker.url, PROJECTION_BATCH_SIZE="25")
    writer = Writer(seed=22, users=users)
    writer.start()
    kills = 0
    beat = start_beat(env, tmp_path)
    worker = start_worker(env, "victim", tmp_path / "worker.log")
    try:
        for _ in range(6):
            tasks.nudge_after_commit()
            time.sleep(1.2)
            kill(worker, signal.SIGKILL)
            kills += 1
            worker = start_worker(env, f"victim{kills}", tmp_path / "worker.log")
        writer.finish()
        tasks.sweep()
        wait_until_caught_up(60)
    finally:
        writer.stop.set()
        kill(worker)
        kill(beat)
    assert kills == 6
    assert writer.commands > 50
    assert_exact()


def test_commands_go_on_while_redis_is_down_and_nothing_is_lost(broker, tmp_path):
    rng = random.Random(31)
    users = make_users()
    seed_catalog(rng, products=20)
    env = process_env(broker.url)
    worker = start_worker(env, "steady", tmp_path / "worker.log")
    beat = start_beat(env, tmp_path)
    with running(worker, beat):
        writer = Writer(seed=32, users=users)
        writer.start()
        time.sleep(2)
        broker.stop()
        events_before_outage = Event.objects.count()
        time.sleep(3)
        events_during_outage = Event.objects.count() - events_before_outage
        assert not caught_up() or events_during_outage == 0
        broker.start()
        time.sleep(2)
        writer.finish()
        wait_until_caught_up(60)
    assert events_during_outage > 10, "commands must keep succeeding while Redis is down"
    assert writer.slowest < 2.0, f"a command hung for {writer.slowest:.2f} s on the dead broker"
    assert_exact()


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
