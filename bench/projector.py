"""Projector throughput and commit-to-visible latency, beside the naive projector.

    python -m bench projector --size small|large|smoke

1. Throughput: one process replays the log into empty read tables (all
   partitions, so every event is read by every partition), with the engine's
   batches; then the naive projector of the reference (recompute AVG and COUNT
   over all of the product's reviews on the write database for each review
   event, one transaction per event) on the same review events.
2. Latency: a steady stream of commands (reviews, price and stock changes) at a
   fixed rate while a runner projects: ``run_projectors`` (LISTEN/NOTIFY) and a
   Celery worker + beat. The time from a command's commit to the moment every
   product partition's checkpoint has passed its event, observed through the
   checkpoints' own NOTIFY, is its commit-to-visible latency.
"""

import argparse
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench import setup

SIZES = {
    "small": {"products": 1000, "reviews": 4000, "hot": 2000, "seconds": 5, "rate": 200},
    "smoke": {"products": 300, "reviews": 1000, "hot": 500, "seconds": 2, "rate": 100},
    "large": {"products": 10000, "reviews": 40000, "hot": 20000, "seconds": 20, "rate": 200},
}
NAIVE_SAMPLE = 3000
# run_projectors at 4 partitions (4 and 1 processes) and 1; Celery at 4 and 1;
# run_projectors at 4 partitions while they are split to 8 and merged back.
LATENCY_RUNS = 6
CHUNK = 500


def seed(size: dict[str, int], rng: random.Random) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from catalog import services as catalog
    from reviews.services import review_add

    user_model = get_user_model()
    password = make_password(None)
    latency_users = size["rate"] * size["seconds"] * LATENCY_RUNS
    users_needed = size["hot"] + size["reviews"] // 4 + latency_users
    user_model.objects.bulk_create(
        [user_model(username=f"bench{n:06d}", password=password) for n in range(users_needed)],
        batch_size=5000,
    )
    users = list(user_model.objects.order_by("pk"))
    sellers = [
        catalog.seller_register(name=f"Seller {n}", reputation=Decimal(rng.randint(200, 500)) / 100)
        for n in range(20)
    ]
    product_ids: list[int] = []
    for start in range(0, size["products"], CHUNK):
        with transaction.atomic():
            for n in range(start, min(start + CHUNK, size["products"])):
                product = catalog.product_create(
                    seller_id=rng.choice(sellers).pk,
                    name=f"Product {n}",
                    slug=f"product-{n}",
                    price=Decimal(rng.randint(500, 50000)) / 100,
                    stock_quantity=rng.randint(0, 50),
                )
                product_ids.append(product.pk)
    for start in range(0, len(product_ids), CHUNK):
        with transaction.atomic():
            for product_id in product_ids[start : start + CHUNK]:
                others = rng.sample(product_ids, 5)
                catalog.product_set_recommendations(
                    product_id=product_id,
                    related_ids=[pk for pk in others if pk != product_id][:4],
                )
    hot = product_ids[0]
    review_plan = [(hot, users[n]) for n in range(size["hot"])]
    seen = set()
    author_pool = users[size["hot"] : size["hot"] + size["reviews"] // 4]
    while len(review_plan) < size["hot"] + size["reviews"]:
        pair = (rng.choice(product_ids[1:]), rng.choice(author_pool))
        if (pair[0], pair[1].pk) not in seen:
            seen.add((pair[0], pair[1].pk))
            review_plan.append(pair)
    rng.shuffle(review_plan)
    for start in range(0, len(review_plan), CHUNK):
        with transaction.atomic():
            for product_id, author in review_plan[start : start + CHUNK]:
                review_add(
                    product_id=product_id,
                    author=author,
                    rating=rng.choice([1, 2, 3, 4, 4, 5, 5, 5]),
                    body="Bench review text.",
                )
    spare = users[size["hot"] + size["reviews"] // 4 :]
    return {"product_ids": product_ids, "hot": hot, "spare_users": spare}


def wipe_read_side() -> None:
    from django.db import connections

    from projections.rebuild import SWAPPED_MODELS

    tables = ", ".join(model._meta.db_table for model in SWAPPED_MODELS)
    with connections["read"].cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")


def measure_replay(partitions: int) -> dict[str, float]:
    """Replay the whole log into empty read tables, partition after partition,
    through the engine as a runner drives it (see ``Runner._catch_up``).

    Also times the review events on their own: the seed writes them last, so
    every batch that starts after the first ``ReviewAdded`` holds reviews only.
    """
    from django.conf import settings

    from eventstore.models import Event
    from projections.engine import Outcome, ensure_checkpoints, run_batch
    from projections.registry import PROJECTIONS

    settings.PROJECTION_PARTITIONS = partitions
    wipe_read_side()
    events = Event.objects.count()
    reviews = Event.objects.filter(event_type="ReviewAdded").count()
    first_review = Event.objects.filter(event_type="ReviewAdded").order_by("position").first()
    assert first_review is not None
    review_seconds = 0.0
    started = time.perf_counter()
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
        for partition in range(projection.partition_count()):
            # As a runner does: one instance kept from batch to batch, and
            # the checkpoint its last batch left.
            instance = projection(partition, projection.partition_count())
            known = None
            while True:
                batch_started = time.perf_counter()
                result = run_batch(projection, partition, known=known, projection=instance)
                if result.outcome is not Outcome.APPLIED:
                    break
                known = result.checkpoint
                if projection.name == "products" and (
                    result.position.position - result.applied >= first_review.position
                ):
                    review_seconds += time.perf_counter() - batch_started
    elapsed = time.perf_counter() - started
    return {
        "partitions": partitions,
        "events": events,
        "review_events": reviews,
        "seconds": elapsed,
        "events_per_second": events / elapsed,
        "review_seconds": review_seconds,
        # Each review is applied once per product partition; the rate is of
        # reviews through the whole product projector, all partitions.
        "review_events_per_second": reviews / review_seconds if review_seconds else 0.0,
    }


def measure_naive(sample: int) -> dict[str, float]:
    """The reference's projector: recompute the product's AVG and COUNT per event."""
    from django.db import connections, transaction

    from eventstore.models import Event

    events = list(Event.objects.filter(event_type="ReviewAdded").order_by("position")[:sample])
    write = connections["default"]
    started = time.perf_counter()
    for event in events:
        product_id = event.payload["product_id"]
        with write.cursor() as cursor:
            cursor.execute(
                "SELECT AVG(rating)::numeric(3,2), COUNT(*) FROM reviews_review "
                "WHERE product_id = %s AND NOT is_hidden",
                [product_id],
            )
            average, count = cursor.fetchone()
        with transaction.atomic(using="read"), connections["read"].cursor() as cursor:
            cursor.execute(
                "UPDATE projections_productreadmodel SET avg_rating = %s, review_count = %s "
                "WHERE product_id = %s",
                [average, count, product_id],
            )
    elapsed = time.perf_counter() - started
    return {"events": len(events), "seconds": elapsed, "events_per_second": len(events) / elapsed}


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class LatencyProbe:
    """Commands at a steady rate, and when each became visible (``_watcher``)."""

    def __init__(self, seeded: dict[str, Any], rate: int, seconds: int, rng: random.Random):
        self.seeded = seeded
        self.rate = rate
        self.seconds = seconds
        self.rng = rng
        # Each command's token, when it committed, and how long until its
        # token was applied (None: not yet).
        self.pending: list[tuple[Any, float, float | None]] = []
        self.latencies: list[float] = []
        self.every_partition: list[float] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.errors = 0

    def _command(self, index: int) -> None:
        from catalog import services as catalog
        from reviews.services import review_add

        product_id = self.rng.choice(self.seeded["product_ids"])
        roll = self.rng.random()
        if roll < 0.7:
            author = self.seeded["spare_users"].pop()
            review_add(product_id=product_id, author=author, rating=4, body="Latency probe.")
        elif roll < 0.85:
            price = Decimal(self.rng.randint(500, 50000)) / 100
            catalog.product_change_price(product_id=product_id, price=price)
        else:
            catalog.product_change_stock(product_id=product_id, quantity=self.rng.randint(0, 60))

    def _writer(self, offset: int, threads: int) -> None:
        from django.db import connections

        from eventstore.recording import capture_positions

        interval = threads / self.rate
        start = time.perf_counter()
        count = int(self.rate * self.seconds / threads)
        for n in range(count):
            target = start + n * interval + offset * interval / threads
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                with capture_positions() as positions:
                    self._command(n)
            except Exception:
                self.errors += 1
                continue
            if positions:
                with self.lock:
                    self.pending.append((positions.token(), time.perf_counter(), None))
        connections.close_all()

    def _watcher(self) -> None:
        """When each command became visible, as a query carrying its token
        would see it: through a checkpoint watch like a web process's
        (``queries.consistency``), which follows the checkpoints' NOTIFY
        payloads; the token waits for the partitions that own its keys. And
        when every partition had passed it (what a token without keys, a
        seller's, waits for)."""
        from django.db import connections

        from queries.consistency import CheckpointWatch

        watch = CheckpointWatch()
        seen = 0
        while True:
            with self.lock:
                pending = list(self.pending)
            if not pending and self.done.is_set():
                break
            if self.done.is_set() and time.perf_counter() > self.deadline:
                break
            seen = watch.wait_for_move(seen, time.monotonic() + 0.01)
            now = time.perf_counter()
            still = []
            for token, committed, shown in pending:
                if shown is None and watch.applied(token.position, "products", token.keys):
                    shown = now - committed
                    self.latencies.append(shown)
                if watch.applied(token.position, "products"):
                    self.every_partition.append(now - committed)
                else:
                    still.append((token, committed, shown))
            with self.lock:
                self.pending = still + self.pending[len(pending) :]
        watch.stop()
        connections.close_all()

    def run(self) -> dict[str, float]:
        threads = 2
        writers = [threading.Thread(target=self._writer, args=(n, threads)) for n in range(threads)]
        watcher = threading.Thread(target=self._watcher)
        self.deadline = float("inf")
        watcher.start()
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        self.deadline = time.perf_counter() + 30
        self.done.set()
        watcher.join()
        latencies = sorted(self.latencies)
        every = sorted(self.every_partition)
        return {
            "commands": len(every) + len(self.pending),
            "seen": len(latencies),
            "errors": self.errors,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * percentile(latencies, 0.99) if latencies else float("nan"),
            "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
            "every_partition_p50_ms": 1000 * statistics.median(every) if every else float("nan"),
            "every_partition_p99_ms": 1000 * percentile(every, 0.99) if every else float("nan"),
        }


def measure_latency(
    runner: str,
    seeded: dict[str, Any],
    size: dict[str, int],
    partitions: int,
    processes_count: int = 1,
    during: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """``processes_count`` run_projectors processes of one thread each (one:
    a thread per partition); Celery is one worker of 5 threads either way.
    ``during`` runs on a thread of its own beside the probe (an operator)."""
    from django.conf import settings

    from projections.rebuild import analyze_read_side
    from projections.registry import project_all

    settings.PROJECTION_PARTITIONS = partitions
    wipe_read_side()
    project_all()
    # Statistics, as autovacuum gathers them within a minute or two on a
    # running system (see ``analyze_read_side``).
    analyze_read_side()
    env = {"PROJECTION_PARTITIONS": str(partitions)}
    if runner == "run_projectors" and processes_count > 1:
        processes = [
            setup.manage("run_projectors", "--threads", "1", **env) for _ in range(processes_count)
        ]
    elif runner == "run_projectors":
        processes = [setup.manage("run_projectors", **env)]
    else:
        processes = [
            setup.celery("worker", "-P", "threads", "-c", "5", "--without-gossip", **env),
            setup.celery("beat", "-s", "/tmp/storefront-bench-beat", **env),
        ]
        settings.CELERY_BROKER_URL = setup.BROKER_URL
        from projections import tasks

        tasks._redis.cache_clear()
    time.sleep(4)  # let the runner start and settle
    try:
        # A seed of its own per run: the same prices and stock as the run before
        # would be no-op commands, with no event to see.
        rng = random.Random(f"{runner}-{partitions}-{processes_count}-{during is not None}")
        probe = LatencyProbe(seeded, size["rate"], size["seconds"], rng)
        operator = threading.Thread(target=during) if during is not None else None
        if operator is not None:
            operator.start()
        result: dict[str, Any] = dict(probe.run())
        if operator is not None:
            operator.join()
            time.sleep(2)  # the projectors catch up with the last commands
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        settings.CELERY_BROKER_URL = ""
    result["runner"] = runner
    result["partitions"] = partitions
    result["processes"] = processes_count
    return result


def measure_resize(seeded: dict[str, Any], size: dict[str, int]) -> dict[str, Any]:
    """Four run_projectors processes on 4 partitions under the latency probe's
    load; a third of the way in, ``resize_partitions 8``, two thirds in, back
    to 4. Each step's time, the probe's latency over the whole run, and the
    drift of every row from the write model once the projectors stopped."""
    from projections.registry import project_all
    from projections.resize import resize
    from projections.verify import verify

    steps: list[Any] = []

    def operator() -> None:
        time.sleep(size["seconds"] / 3)
        steps.extend(resize("products", 8))
        time.sleep(size["seconds"] / 3)
        steps.extend(resize("products", 4))

    result = measure_latency("run_projectors", seeded, size, 4, 4, during=operator)
    project_all()  # whatever the processes left, if anything
    drifted = sum(len(drift.rows) for drift in verify())
    if drifted:  # a benchmark of a resize that is not exact is a failed one
        raise AssertionError(f"{drifted} rows drifted from the write model after the resize")
    result["steps"] = [
        {"before": s.before, "after": s.after, "seconds": s.seconds, "aligned": s.aligned}
        for s in steps
    ]
    result["drifted_rows"] = drifted
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench projector")
    parser.add_argument("--size", choices=SIZES, default="small")
    options = parser.parse_args(argv)
    size = SIZES[options.size]
    setup.recreate_databases()
    # The command side nudges Celery only in the Celery run; no broker while seeding.
    setup.start_django(CELERY_BROKER_URL="")
    rng = random.Random(1)
    print(f"Seeding {size['products']} products and {size['reviews'] + size['hot']} reviews...")
    seeded = seed(size, rng)

    replay_1 = measure_replay(1)
    replay_4 = measure_replay(4)
    naive = measure_naive(NAIVE_SAMPLE)
    latency = [
        measure_latency("run_projectors", seeded, size, 4, processes_count=4),
        measure_latency("run_projectors", seeded, size, 4),
        measure_latency("celery", seeded, size, 4),
        measure_latency("run_projectors", seeded, size, 1),
        measure_latency("celery", seeded, size, 1),
    ]
    resized = measure_resize(seeded, size)

    print("\nProjector throughput (one process, PostgreSQL)")
    print(f"{'projector':<44} {'events':>8} {'seconds':>8} {'events/s':>10}")
    for label, row in (
        ("engine, 4 partitions in one process", replay_4),
        ("engine, 1 partition", replay_1),
        ("naive: recompute AVG per review event", naive),
    ):
        print(
            f"{label:<44} {row['events']:>8} {row['seconds']:>8.2f} "
            f"{row['events_per_second']:>10.0f}"
        )
    ratio = replay_1["events_per_second"] / naive["events_per_second"]
    print(f"engine (1 partition) / naive: {ratio:.1f}x")
    for row in (replay_4, replay_1):
        print(
            f"review events alone, {row['partitions']} partition(s): "
            f"{row['review_events_per_second']:.0f} events/s"
        )
    print(f"\nCommit-to-visible at {size['rate']} commands/s for {size['seconds']} s")
    print(
        f"{'runner':<16} {'P':>2} {'procs':>5} {'commands':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'errors':>6} {'all p50':>8} {'all p99':>8}"
    )
    print(
        "(p50/p99/max: until the command's token is applied; all: until every partition passed it)"
    )
    for row in latency:
        print(
            f"{row['runner']:<16} {row['partitions']:>2} {row['processes']:>5} "
            f"{row['commands']:>8} "
            f"{row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['errors']:>6} "
            f"{row['every_partition_p50_ms']:>8.1f} {row['every_partition_p99_ms']:>8.1f}"
        )
    print(f"\nResize under load: 4 run_projectors processes at {size['rate']} commands/s")
    print(f"{'step':<10} {'seconds':>8} {'events aligned':>15}")
    for step in resized["steps"]:
        label = f"{step['before']} -> {step['after']}"
        print(f"{label:<10} {step['seconds']:>8.3f} {step['aligned']:>15}")
    print(
        f"commit-to-visible across the run: p50 {resized['p50_ms']:.1f} ms, "
        f"p99 {resized['p99_ms']:.1f} ms, max {resized['max_ms']:.1f} ms; "
        f"rows drifted after it: {resized['drifted_rows']}"
    )
    results = {
        "size": options.size,
        "resize": resized,
        "replay": [replay_4, replay_1],
        "naive": naive,
        "latency": latency,
        "rate": size["rate"],
    }
    setup.RESULTS.mkdir(parents=True, exist_ok=True)
    (setup.RESULTS / f"projector-{options.size}.json").write_text(json.dumps(results, indent=2))
    return results
