"""Partitions taken over when their owner dies: three run_projectors
processes share the partitions; the test SIGKILLs whichever owns the most,
again and again, and the others take its partitions on without anyone
stepping in (its advisory locks went with its connections)."""

import collections
import random
import signal
import time

import pytest

from catalog import services as catalog
from catalog.models import Product
from eventstore import eventlog
from eventstore.recording import capture_positions
from projections.models import Checkpoint
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, seed_catalog
from tests.projections.processes import (
    kill,
    process_env,
    start_run_projectors,
    wait_for_log,
    wait_until_caught_up,
    wait_until_passed,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

TAKEOVERS = 4


def owners() -> dict[str, str]:
    """Which process last applied a batch of each partition, by pid."""
    return {
        f"{c.projector}[{c.partition}]": c.owner.rsplit(":", 1)[-1]
        for c in Checkpoint.objects.all()
    }


def an_event_after_the_kill(rng: random.Random) -> eventlog.LogPosition:
    product = Product.objects.order_by("?").first()
    assert product is not None
    with capture_positions() as positions:
        catalog.product_change_stock(
            product_id=product.pk, quantity=product.stock_quantity + rng.randint(1, 5)
        )
    return positions[-1]


def test_a_dead_owners_partitions_are_taken_over_without_anyone_stepping_in(tmp_path):
    rng = random.Random(91)
    users = make_users()
    seed_catalog(rng, products=24)
    env = process_env("", PROJECTION_BATCH_SIZE="10")
    logs = tmp_path / "loops.log"
    loops = {}
    for _ in range(3):
        loop = start_run_projectors(env, logs)
        loops[str(loop.pid)] = loop
    writer = Writer(seed=92, users=users, pause=0.002)
    taken_over = 0
    try:
        for loop in loops.values():
            wait_for_log(logs, f":{loop.pid}. Ctrl-C stops.")
        writer.start()
        for _ in range(TAKEOVERS):
            time.sleep(1.5)
            held = collections.Counter(pid for pid in owners().values() if pid in loops)
            victim_pid, _ = held.most_common(1)[0]
            victim = loops.pop(victim_pid)
            theirs = {part for part, pid in owners().items() if pid == victim_pid}
            kill(victim, signal.SIGKILL)
            # Every partition applies or passes over every event, and only a
            # survivor can pass one committed after the kill (the victim's last
            # batch may already have passed the head as it was at the kill).
            after_kill = an_event_after_the_kill(rng)
            wait_until_passed(after_kill, 30, f"nobody took over {sorted(theirs)}")
            now = owners()
            assert all(now[part] != victim_pid for part in theirs), now
            taken_over += len(theirs)
            successor = start_run_projectors(env, logs)
            loops[str(successor.pid)] = successor
        # A new process takes its share within seconds of starting: the others
        # let go of what is beyond theirs at their next rebalance (every second).
        wait_for_log(logs, f":{successor.pid}. Ctrl-C stops.")
        deadline = time.monotonic() + 10
        while str(successor.pid) not in owners().values():
            assert time.monotonic() < deadline, f"{successor.pid} took nothing: {owners()}"
            time.sleep(0.1)
        writer.finish()
        wait_until_caught_up(60)
    finally:
        writer.stop.set()
        for loop in loops.values():
            kill(loop)
    assert taken_over >= TAKEOVERS
    assert_no_drift()
    tally.count("run_projectors owners SIGKILLed", TAKEOVERS)
    tally.count("partitions taken over from a dead owner", taken_over)
