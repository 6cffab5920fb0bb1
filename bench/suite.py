"""The whole benchmark suite in one run, on one data set.

    python -m bench all --size small|large [--only SECTIONS] [--skip SECTIONS] [--reuse]

1. seed:     fresh bench databases, ``seed_demo --bulk`` at the size's scale;
2. project:  ``run_projectors --once`` from an empty read side (the replay
             rate), then a check that every row equals the truth;
3. database: the five-table query against the read-model row;
4. http:     API, detail page, naive endpoint and ceiling under gunicorn;
5. commands: review_add and product_change_price latency, idle and under load;
6. cache:    cache-aside staleness and thundering herd against the read model;
7. rebuild:  rebuild_projections (if the command exists) against the SQL floor;
8. projector: the projector bench (``bench/projector.py``) on its own databases.

Writes ``bench/results/<size>/results.json`` (raw figures and the machine),
``report.md`` and PNG plots. Exits non-zero when a section fails (an error,
a wrong answer, a 5xx), never because something was slow.
"""

import argparse
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import setup

SECTIONS = ["seed", "project", "database", "http", "commands", "cache", "rebuild", "projector"]


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    sellers: int
    products: int
    reviews: int
    hot_reviews: int
    price_changes: int
    db_runs: int  # executions per query (at most)
    db_seconds: float  # time budget per query
    http_seconds: float  # wrk run per endpoint
    rate_seconds: float  # fixed-rate run per endpoint
    commands: int  # of each kind, per condition
    cache_products: int
    cache_ttl: float
    cache_seconds: float
    writes_per_second: float
    herd_threads: int
    herd_ttl: float
    herd_seconds: float
    rebuild_timeout: float
    replay_budget: float  # a longer replay is stopped and extrapolated
    rebuild_from_events: bool  # also time rebuild_projections --from-events

    @property
    def seed_arguments(self) -> list[str]:
        return [
            *("--sellers", str(self.sellers), "--products", str(self.products)),
            *("--reviews", str(self.reviews), "--hot-reviews", str(self.hot_reviews)),
            *("--price-changes", str(self.price_changes)),
        ]


SIZES = {
    "small": Size(
        name="small",
        sellers=10,
        products=300,
        reviews=6000,
        hot_reviews=3000,
        price_changes=1500,
        db_runs=300,
        db_seconds=2,
        http_seconds=4,
        rate_seconds=4,
        commands=100,
        cache_products=10,
        cache_ttl=2,
        cache_seconds=6,
        writes_per_second=10,
        herd_threads=16,
        herd_ttl=1,
        herd_seconds=5,
        rebuild_timeout=600,
        replay_budget=600,
        rebuild_from_events=True,
    ),
    # CI's smoke check: the small data, every section, the shortest runs.
    "smoke": Size(
        name="smoke",
        sellers=10,
        products=300,
        reviews=6000,
        hot_reviews=3000,
        price_changes=1500,
        db_runs=100,
        db_seconds=0.5,
        http_seconds=1,
        rate_seconds=1,
        commands=20,
        cache_products=5,
        cache_ttl=1,
        cache_seconds=2,
        writes_per_second=10,
        herd_threads=8,
        herd_ttl=0.5,
        herd_seconds=2,
        rebuild_timeout=600,
        replay_budget=600,
        rebuild_from_events=True,
    ),
    "large": Size(
        name="large",
        sellers=50,
        products=10_000,
        reviews=1_950_000,
        hot_reviews=50_000,
        price_changes=600_000,
        db_runs=2000,
        db_seconds=20,
        http_seconds=15,
        rate_seconds=15,
        commands=1000,
        cache_products=20,
        cache_ttl=10,
        cache_seconds=40,
        writes_per_second=20,
        herd_threads=40,
        herd_ttl=3,
        herd_seconds=20,
        rebuild_timeout=2 * 3600,
        replay_budget=300,
        rebuild_from_events=True,
    ),
}


def log(message: str) -> None:
    print(message, flush=True)


def preflight() -> None:
    """Everything the suite needs, checked before the first minute is spent."""
    from bench.web import require_wrk

    require_wrk()
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(
            "matplotlib is needed for the plots: pip install -e '.[bench]' (or make bench-small)."
        )
    problems = []
    machine = setup.machine()
    if machine["postgresql"].startswith("unreachable"):
        problems.append(f"PostgreSQL at {setup.WRITE_URL}: {machine['postgresql']}")
    if machine["redis"].startswith("unreachable"):
        problems.append(f"Redis at {setup.CACHE_URL}: {machine['redis']}")
    if problems:
        raise SystemExit("Cannot run the benchmarks:\n  " + "\n  ".join(problems))


def seed(size: Size) -> dict[str, Any]:
    setup.recreate_databases()
    setup.start_django(CELERY_BROKER_URL="")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--bulk", "--seed", "1", *size.seed_arguments],
        cwd=setup.ROOT,
        env=setup.bench_env(CELERY_BROKER_URL=""),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    log("  " + result.stdout.strip().replace("\n", "\n  "))
    from eventstore.models import Event

    return {
        "seconds": elapsed,
        "arguments": size.seed_arguments,
        "events": Event.objects.count(),
        "output": result.stdout.strip(),
    }


def project(size: Size, fresh: bool) -> dict[str, Any]:
    """Build the read side from a fresh seed, then compare it with the truth.

    From a fresh seed: replay the log from empty (the replay rate; stopped
    and extrapolated past the size's budget), then ``rebuild_projections``
    (from a snapshot of the write model) when the command exists. On reused
    data the read side is only brought up to date.
    """
    from bench import rebuild
    from projections.expected import (
        PRODUCT_FIELDS,
        SELLER_FIELDS,
        actual_products,
        actual_sellers,
        drift,
        expected_products,
        expected_sellers,
    )

    result: dict[str, Any] = {}
    if fresh:
        result["replay"] = rebuild.replay(size.replay_budget, log)
        if rebuild.has_rebuild_command():
            result["rebuild"] = rebuild.rebuild([], size.rebuild_timeout, log)
        elif not result["replay"]["complete"]:
            raise RuntimeError("the replay was stopped and there is no rebuild_projections")
    else:
        catch_up()
    started = time.perf_counter()
    wrong = {
        "products": drift(expected_products(), actual_products(), PRODUCT_FIELDS),
        "sellers": drift(expected_sellers(), actual_sellers(), SELLER_FIELDS),
    }
    result["truth_check_seconds"] = time.perf_counter() - started
    if any(wrong.values()):
        sample = {kind: dict(list(rows.items())[:5]) for kind, rows in wrong.items()}
        raise RuntimeError(f"the read model drifted from the write model: {sample}")
    log(f"  every read-model row equals the truth ({result['truth_check_seconds']:.1f} s to check)")
    return result


def pick_products() -> dict[str, int]:
    """The hot product (most reviews) and a typical one (the median active product)."""
    from projections.models import ProductReadModel

    rows = ProductReadModel.objects.filter(is_active=True)
    hot = rows.order_by("-review_count", "product_id").values_list("product_id", flat=True)[0]
    typical = rows.order_by("review_count", "product_id").values_list("product_id", flat=True)[
        rows.count() // 2
    ]
    return {"hot": hot, "typical": typical}


def catch_up() -> None:
    subprocess.run(
        [sys.executable, "manage.py", "run_projectors", "--once"],
        cwd=setup.ROOT,
        env=setup.bench_env(CELERY_BROKER_URL=""),
        stdout=subprocess.DEVNULL,
        check=True,
    )


def cache_section(size: Size, products: dict[str, int]) -> dict[str, Any]:
    """Staleness on two sets of products, then the thundering herd.

    The most reviewed products are the worst case for the read model: they
    are also the most recommended, so each of their price changes rewrites
    every row that lists them (the fan-out). A random set is the usual case.
    """
    import random

    from bench import cache
    from catalog.models import Recommendation
    from projections.models import ProductReadModel

    catch_up()
    active = ProductReadModel.objects.filter(is_active=True)
    # Random first: the popular set's fan-out leaves the projector a backlog.
    workloads = {
        "random": random.Random(9).sample(
            list(active.values_list("product_id", flat=True)), size.cache_products
        ),
        "popular": list(
            active.order_by("-review_count").values_list("product_id", flat=True)[
                : size.cache_products
            ]
        ),
    }
    stale: dict[str, Any] = {}
    projector = setup.manage("run_projectors", CELERY_BROKER_URL="")
    try:
        time.sleep(3)  # listening
        for name, product_ids in workloads.items():
            shown_on = Recommendation.objects.filter(related_id__in=product_ids).count()
            log(
                f"  staleness, {name} products (each on {shown_on / len(product_ids):.0f} other "
                f"pages): {size.writes_per_second:g} price changes/s for {size.cache_seconds:g} s, "
                f"cache TTL {size.cache_ttl:g} s"
            )
            stale[name] = cache.staleness(size, product_ids, log)
            stale[name]["pages_showing_each_product"] = shown_on / len(product_ids)
            for path in ("cache_aside", "read_model"):
                row = stale[name][path]
                seen = row["visible_after"]
                log(
                    f"    {path:<12} visible after p50 {seen.get('p50_ms', math.nan):.0f} ms, "
                    f"p99 {seen.get('p99_ms', math.nan):.0f} ms; {row['never_seen']} never seen; "
                    f"{100 * row['stale_fraction']:.1f}% of reads stale"
                )
    finally:
        projector.terminate()
        projector.wait(30)
    log(f"  thundering herd: {size.herd_threads} readers, TTL {size.herd_ttl:g} s")
    return {"staleness": stale, "herd": cache.herd(size, products["hot"], log)}


def rebuild_section(size: Size, project: dict[str, Any] | None) -> dict[str, Any]:
    """The SQL floor, and rebuild_projections both ways when it exists."""
    from bench import rebuild

    figures: dict[str, Any] = {"floor": rebuild.floor(log)}
    if not rebuild.has_rebuild_command():
        log("  rebuild_projections: the command does not exist yet; skipped")
        return figures
    # Timed here, beside the floor and like it: twice, the better run counts,
    # all runs are kept. The project step's rebuild ran right after the seed,
    # with autovacuum at work on the new tables; it is kept but not compared.
    runs = [rebuild.rebuild([], size.rebuild_timeout, log) for _ in range(2)]
    snapshot = dict(min(runs, key=lambda run: float(run["seconds"])))
    snapshot["runs"] = [run["seconds"] for run in runs]
    first = (project or {}).get("rebuild")
    if first is not None:
        snapshot["project_step_seconds"] = first["seconds"]
    log(
        f"  rebuild_projections (snapshot): {snapshot['seconds']:.1f} s, the better of "
        f"{', '.join(f'{run:.1f}' for run in snapshot['runs'])} s; "
        f"{snapshot['seconds'] / figures['floor']['seconds']:.1f}x the floor"
    )
    figures["snapshot"] = snapshot
    if size.rebuild_from_events:
        figures["from_events"] = rebuild.rebuild(["--from-events"], size.rebuild_timeout, log)
    else:
        log("  rebuild_projections --from-events: too long at this size; see the replay rate")
    return figures


def projector_section(size: Size) -> dict[str, Any]:
    """The lead's projector bench, on databases of its own (it recreates them)."""
    env = dict(os.environ)
    env["BENCH_DATABASE_URL"] = setup.WRITE_URL + "_projector"
    env["BENCH_READ_DATABASE_URL"] = setup.READ_URL + "_projector"
    subprocess.run(
        [sys.executable, "-m", "bench", "projector", "--size", size.name],
        cwd=setup.ROOT,
        env=env,
        check=True,
    )
    path = setup.RESULTS / f"projector-{size.name}.json"
    return dict(json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench all", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data already in the bench databases (no seeding, no replay)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default bench/results/<size>)"
    )
    options = parser.parse_args(argv)
    size = SIZES[options.size]
    chosen = [s for s in (options.only.split(",") if options.only else SECTIONS) if s]
    skipped = {s for s in options.skip.split(",") if s}
    unknown = (set(chosen) | skipped) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    run = [s for s in SECTIONS if s in chosen and s not in skipped]
    preflight()

    out = options.out or setup.RESULTS / size.name
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "size": dataclasses.asdict(size),
        "machine": setup.machine(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sections": run,
        "errors": {},
        "seconds": {},
        # 1, 5 and 15 minute load averages before the run and around each section:
        # anything well above what the bench itself runs means a busy machine.
        "load_average": {"before": [os.getloadavg()]},
    }

    def section(name: str, work: Callable[[], Any]) -> Any:
        log(f"\n== {name}")
        results["load_average"][name] = [os.getloadavg()]
        started = time.perf_counter()
        try:
            value = work()
        except Exception as error:
            traceback.print_exc()
            results["errors"][name] = f"{type(error).__name__}: {error}"
            value = None
        else:
            results[name] = value
        results["seconds"][name] = time.perf_counter() - started
        results["load_average"][name].append(os.getloadavg())
        return value

    fresh = "seed" in run and not options.reuse
    if fresh:
        section("seed", lambda: seed(size))
    else:
        setup.start_django(CELERY_BROKER_URL="")
    if "project" in run and "seed" not in results["errors"]:
        section("project", lambda: project(size, fresh))
    products = section("products", pick_products) if not results["errors"] else None
    if products is not None:
        log(f"  hot product {products['hot']}, typical product {products['typical']}")
        from bench import commands, database, web

        if "database" in run:
            section("database", lambda: database.run(size, products, log))
        if "http" in run:
            section("http", lambda: web.run(size, products, log))
        if "commands" in run:
            section("commands", lambda: commands.run(size, products, log))
        if "cache" in run:
            section("cache", lambda: cache_section(size, products))
        if "rebuild" in run:
            section("rebuild", lambda: rebuild_section(size, results.get("project")))
    if "projector" in run:
        section("projector", lambda: projector_section(size))

    results["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results_path = out / "results.json"
    results_path.write_text(json.dumps(results, indent=1, default=str))
    from bench import report

    report.write(results, out)
    log(f"\nResults: {results_path}\nReport:  {out / 'report.md'}")
    if results["errors"]:
        log("Failed: " + ", ".join(results["errors"]))
        sys.exit(1)
