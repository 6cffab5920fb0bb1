"""Every event delivered twice, batches replayed out of order, wake-ups queued
twice for the same partition: each event still takes effect exactly once."""

import random
import time

import pytest

from eventstore import eventlog
from eventstore.eventlog import LogPosition
from projections import tasks
from projections.engine import Outcome, ensure_checkpoints, run_batch
from projections.models import Checkpoint
from projections.registry import PROJECTIONS, project_all
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, make_users, random_command, seed_catalog
from tests.projections.processes import (
    kill,
    process_env,
    running,
    start_worker,
    wait_until_caught_up,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]


def chunks(rng: random.Random, events: list) -> list[list]:
    batches, start = [], 0
    while start < len(events):
        size = rng.randint(1, 25)
        batches.append(events[start : start + size])
        start += size
    return batches


def history(seed: int) -> tuple[random.Random, list, list]:
    rng = random.Random(seed)
    users = make_users()
    seed_catalog(rng, products=12)
    for _ in range(250):
        random_command(rng, users)
    return rng, users, eventlog.read_events(eventlog.START, 100_000)


def test_every_batch_delivered_again_late_and_overlapping_applies_each_event_once():
    """Each batch arrives in order once, and again later, at random, together
    with batches cut differently that straddle the checkpoint.

    Partitions take their in-order batches in turns: a product partition
    applies only its own products' events and passes the others', and waits
    (``Outcome.WAITING``) before a list that shows a product its owner has not
    created yet; the rest of that batch comes again in its next turn."""
    rng, users, events = history(71)
    outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
    writer = Writer(seed=72, users=users)
    writer.start()  # commands keep coming while the replays go on
    try:
        partitions = [
            (projection, partition)
            for projection in PROJECTIONS.values()
            for partition in range(projection.partition_count())
        ]
        for projection, _ in partitions:
            ensure_checkpoints(projection)
        pending = {key: list(events) for key in partitions}
        delivered: dict[tuple, list[list]] = {key: [] for key in partitions}
        other_cut = {key: chunks(rng, events) for key in partitions}
        for _ in range(10 * len(events)):
            if not any(pending.values()):
                break
            for key in partitions:
                projection, partition = key
                # What the checkpoint passed (an in-order batch, or a replay
                # that happened to be the slice's next events) is not sent again.
                checkpoint = Checkpoint.objects.get(projector=projection.name, partition=partition)
                reached = LogPosition(checkpoint.transaction_id, checkpoint.position)
                pending[key] = [e for e in pending[key] if e.log_position > reached]
                if not pending[key]:
                    continue
                batch = pending[key][: rng.randint(1, 25)]
                result = run_batch(projection, partition, events=batch)
                assert result.outcome in (Outcome.APPLIED, Outcome.WAITING), result
                delivered[key].append(batch)
                replays = rng.sample(delivered[key], min(len(delivered[key]), rng.randint(0, 3)))
                # cut differently: it starts at or before the checkpoint, maybe ends past it
                straddling = [
                    other
                    for other in other_cut[key]
                    if other[0].log_position <= batch[-1].log_position
                ]
                for replay in [*replays, rng.choice(straddling)]:
                    outcomes[run_batch(projection, partition, events=replay).outcome] += 1
        assert not any(pending.values()), "in-order deliveries stopped applying"
        for key in partitions:  # and every one of them once more at the end
            for replay in delivered[key]:
                outcomes[run_batch(*key, events=replay).outcome] += 1
    finally:
        writer.finish()
    project_all()
    assert_no_drift()
    assert outcomes[Outcome.FAILED] == 0
    assert outcomes[Outcome.BUSY] > len(events)
    tally.count("stale or straddling batches replayed and refused", outcomes[Outcome.BUSY])


def test_batches_delivered_twice_in_any_order_apply_each_event_once():
    rng, _, events = history(75)
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
        for partition in range(projection.partition_count()):
            deliveries = [batch for batch in chunks(rng, events) for _ in range(2)]
            rng.shuffle(deliveries)
            progress = True
            while progress:  # rounds of the same shuffled deliveries, until none applies
                progress = False
                for batch in deliveries:
                    result = run_batch(projection, partition, events=batch)
                    progress |= result.outcome is Outcome.APPLIED
    project_all()
    assert_no_drift()


@pytest.mark.postgres
@pytest.mark.broker
def test_wake_ups_queued_twice_for_every_partition_count_once(broker, tmp_path):
    rng = random.Random(73)
    users = make_users()
    seed_catalog(rng, products=16)
    env = process_env(broker.url, PROJECTION_BATCH_SIZE="15")
    first = start_worker(env, "twin-a", tmp_path / "a.log")
    second = start_worker(env, "twin-b", tmp_path / "b.log")
    queued = 0
    with running(first, second):
        writer = Writer(seed=74, users=users, pause=0.002)
        writer.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for name, projection in PROJECTIONS.items():
                for partition in range(projection.partition_count()):
                    for _ in range(2):  # past the pending flag: a duplicate delivery
                        tasks.project_partition.apply_async((name, partition), retry=False)
                        queued += 1
            time.sleep(0.25)
        writer.finish()
        tasks.sweep()
        wait_until_caught_up(60)
    kill(first)
    kill(second)
    assert_no_drift()
    tally.count("wake-ups delivered twice to two workers", queued // 2)
