"""Scale-out: one log projected from empty by P processes at P partitions.

    python -m bench scaling --size smoke|small|large [--partitions 1,2,4,8]

The log is seeded once (``seed_demo --bulk``). For each P the read side is
emptied and P ``run_projectors --threads 1`` processes start with
``PROJECTION_PARTITIONS=P`` (``--processes N``: N of them for every P).
While they start, the bench holds every partition's lock, so none of them
projects yet; once all of them listen for new events, it lets go and wakes
them, and the clock runs until every partition of every
projector has passed the log's head. Reported for each P:

- events/s (the log's events over that time);
- CPU seconds per 1,000 events of the projector processes (their own user and
  system time over the run, from ``/proc/<pid>/stat``; their start-up is not
  in it) and of the whole machine (``/proc/stat``'s busy time, PostgreSQL,
  this bench and anything else running here included; steal left out);
- each as a ratio to P=1, beside issue 15's goals (P=8 within 1.2x of P=1 for
  the projectors and 1.3x for the machine; P=2 at least 1.5x the events/s of
  P=1).

Each product partition reads only its slice of the log and applies only its
own products' events, so the work per event stays flat with P
(``bench/results/scaling/report.md`` has the baseline from before). The
commit-to-visible latency of a partitioned runner is in
``python -m bench projector``.
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench import setup

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"products": 200, "reviews": 4000, "hot": 500, "prices": 500, "partitions": [1, 2]},
    "small": {
        "products": 2000,
        "reviews": 150_000,
        "hot": 20_000,
        "prices": 20_000,
        "partitions": [1, 2, 4, 8],
    },
    "large": {
        "products": 10_000,
        "reviews": 600_000,
        "hot": 50_000,
        "prices": 100_000,
        "partitions": [1, 2, 4, 8],
    },
}
GOALS = {"projector_cpu_p8": 1.2, "machine_cpu_p8": 1.3, "events_per_second_p2": 1.5}
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def machine_busy_seconds() -> float:
    """This machine's busy CPU time: user, nice, system, irq and softirq (not
    idle, iowait or steal; guests are inside user). Whatever else runs here
    counts too."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    return (user + nice + system + irq + softirq) / TICKS


def seed(size: dict[str, Any]) -> int:
    from django.core.management import call_command

    from eventstore.models import Event

    call_command(
        "seed_demo",
        "--bulk",
        "--seed",
        "15",
        "--products",
        str(size["products"]),
        "--reviews",
        str(size["reviews"]),
        "--hot-reviews",
        str(size["hot"]),
        "--price-changes",
        str(size["prices"]),
        verbosity=0,
    )
    return Event.objects.count()


def caught_up() -> bool:
    from eventstore import eventlog
    from projections.models import Checkpoint
    from projections.registry import PROJECTIONS

    head = eventlog.head()
    expected = sum(projection.partition_count() for projection in PROJECTIONS.values())
    rows = Checkpoint.objects.values_list("projector", "partition", "transaction_id", "position")
    current = [
        row for row in rows if row[1] < PROJECTIONS[row[0]].partition_count()
    ]  # a wider P's checkpoints stay behind from an earlier run: not ours
    return len(current) == expected and all(
        eventlog.LogPosition(txid, position) >= head for _, _, txid, position in current
    )


def hold_every_partition(partitions: int) -> Any:
    """A session of the bench's own that holds every partition's lock: the
    runners start, find every partition busy and wait."""
    from projections.engine.checkpoints import lock_key
    from projections.registry import PROJECTIONS

    session = setup.connect(setup.READ_URL)
    for projection in PROJECTIONS.values():
        count = partitions if projection.partitioned else 1
        for partition in range(count):
            session.execute(
                "SELECT pg_advisory_lock(%s, %s)", [lock_key(projection.name), partition]
            )
    return session


def wait_until_listening(processes: int, runners: list[Any], timeout: float = 120.0) -> None:
    """Until every runner has started and waits on ``LISTEN`` (its last step
    before projecting), so no start-up is measured."""
    deadline = time.monotonic() + timeout
    with setup.connect(setup.WRITE_URL) as session:
        while True:
            for runner in runners:
                assert runner.poll() is None, "a runner exited while starting"
            listening = session.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
            ).fetchone()[0]
            if listening >= processes:
                return
            assert time.monotonic() < deadline, f"{listening} of {processes} runners started"
            time.sleep(0.1)


def measure(partitions: int, events: int, processes: int) -> dict[str, Any]:
    from django.conf import settings

    from bench.projector import wipe_read_side
    from projections.engine import ensure_checkpoints
    from projections.registry import PROJECTIONS

    settings.PROJECTION_PARTITIONS = partitions
    wipe_read_side()
    for projection in PROJECTIONS.values():
        ensure_checkpoints(projection)
    holder = hold_every_partition(partitions)
    runners = [
        setup.manage("run_projectors", "--threads", "1", PROJECTION_PARTITIONS=str(partitions))
        for _ in range(processes)
    ]
    try:
        wait_until_listening(processes, runners)
        time.sleep(0.5)  # each has found every partition busy and waits
        cpu_before = {runner.pid: process_cpu_seconds(runner.pid) for runner in runners}
        machine_before = machine_busy_seconds()
        started = time.perf_counter()
        holder.execute("SELECT pg_advisory_unlock_all()")
        with setup.connect(setup.WRITE_URL) as writer:
            writer.execute("SELECT pg_notify('storefront_events', '')")  # wake them now
        while not caught_up():
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        machine = machine_busy_seconds() - machine_before
        projectors = sum(
            process_cpu_seconds(runner.pid) - cpu_before[runner.pid] for runner in runners
        )
    finally:
        holder.close()
        for runner in runners:
            runner.terminate()
        for runner in runners:
            runner.wait(60)
    return {
        "partitions": partitions,
        "processes": processes,
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "projector_cpu_per_1k": 1000 * projectors / events,
        "machine_cpu_per_1k": 1000 * machine / events,
    }


def report(rows: list[dict[str, Any]]) -> list[str]:
    base = rows[0]
    lines = [
        f"{'P':>3} {'processes':>9} {'events/s':>9} {'x P=1':>6} {'projector CPU s/1K':>19} "
        f"{'x P=1':>6} {'machine CPU s/1K':>17} {'x P=1':>6}",
    ]
    for row in rows:
        lines.append(
            f"{row['partitions']:>3} {row['processes']:>9} {row['events_per_second']:>9.0f} "
            f"{row['events_per_second'] / base['events_per_second']:>6.2f} "
            f"{row['projector_cpu_per_1k']:>19.3f} "
            f"{row['projector_cpu_per_1k'] / base['projector_cpu_per_1k']:>6.2f} "
            f"{row['machine_cpu_per_1k']:>17.3f} "
            f"{row['machine_cpu_per_1k'] / base['machine_cpu_per_1k']:>6.2f}"
        )
    by_p = {row["partitions"]: row for row in rows}
    if 8 in by_p:
        projector = by_p[8]["projector_cpu_per_1k"] / base["projector_cpu_per_1k"]
        machine = by_p[8]["machine_cpu_per_1k"] / base["machine_cpu_per_1k"]
        lines.append(
            f"goal: projector CPU per event at P=8 within {GOALS['projector_cpu_p8']}x of P=1: "
            f"{projector:.2f}x, {'met' if projector <= GOALS['projector_cpu_p8'] else 'NOT met'}"
        )
        lines.append(
            f"goal: machine CPU per event at P=8 within {GOALS['machine_cpu_p8']}x of P=1: "
            f"{machine:.2f}x, {'met' if machine <= GOALS['machine_cpu_p8'] else 'NOT met'}"
        )
    if 2 in by_p:
        speedup = by_p[2]["events_per_second"] / base["events_per_second"]
        lines.append(
            f"goal: P=2 at least {GOALS['events_per_second_p2']}x the events/s of P=1: "
            f"{speedup:.2f}x, {'met' if speedup >= GOALS['events_per_second_p2'] else 'NOT met'}"
        )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench scaling")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument(
        "--partitions", default="", help="comma-separated P to run (default: the size's)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="run_projectors processes for every P (default: P of them)",
    )
    options = parser.parse_args(argv)
    size = SIZES[options.size]
    partitions = [int(p) for p in options.partitions.split(",") if p] or size["partitions"]
    if partitions[0] != 1:
        partitions = [1, *partitions]  # the baseline of every ratio
    setup.recreate_databases()
    setup.start_django(CELERY_BROKER_URL="")  # run_projectors alone projects
    print(f"Seeding ({options.size})...", flush=True)
    events = seed(size)
    print(f"{events} events in the log", flush=True)
    rows = []
    for p in partitions:
        count = options.processes or p
        print(f"P={p}: {count} run_projectors --threads 1 ...", flush=True)
        rows.append(measure(p, events, count))
    print(f"\nScale-out from empty, {events} events, {os.cpu_count()} cores")
    lines = report(rows)
    print("\n".join(lines))
    results = {"size": options.size, "events": events, "rows": rows, "report": lines}
    setup.RESULTS.mkdir(parents=True, exist_ok=True)
    (setup.RESULTS / f"scaling-{options.size}.json").write_text(json.dumps(results, indent=2))
    return results
