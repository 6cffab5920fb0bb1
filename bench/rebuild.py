"""Rebuilding the read model, against the set-based floor.

The floor is one SQL statement on the write database that computes every
product's read-model row at once (aggregates over reviews, the last 30 price
changes and 5 visible reviews per product by index, recommendations joined
to their products' ratings) into a temporary table: what a rebuild would
cost if it needed no event log, no Python and no second database.
``rebuild_projections`` (when the command exists) and replaying the log from
empty (``run_projectors --once``, measured by the suite right after seeding)
are set against it.
"""

import subprocess
import sys
import time
from typing import Any

from bench import setup

FLOOR_QUERY = """
CREATE TEMP TABLE bench_floor AS
WITH ratings AS (
    SELECT product_id, count(*) AS review_count, sum(rating) AS rating_sum,
           json_build_array(
               count(*) FILTER (WHERE rating = 1), count(*) FILTER (WHERE rating = 2),
               count(*) FILTER (WHERE rating = 3), count(*) FILTER (WHERE rating = 4),
               count(*) FILTER (WHERE rating = 5)) AS histogram
    FROM reviews_review WHERE NOT is_hidden GROUP BY product_id
), related AS (
    SELECT rec.product_id,
           json_agg(json_build_object(
               'id', other.id, 'name', other.name, 'price', other.price,
               'avg_rating', round(theirs.rating_sum::numeric / theirs.review_count, 2))
               ORDER BY rec.rank) AS products
    FROM catalog_recommendation rec
    JOIN catalog_product other ON other.id = rec.related_id
    LEFT JOIN ratings theirs ON theirs.product_id = other.id
    GROUP BY rec.product_id
)
SELECT p.id, p.name, p.slug, p.description, p.is_active, p.price, p.stock_quantity,
       s.id AS seller_id, s.name AS seller_name, s.reputation AS seller_reputation,
       coalesce(r.review_count, 0) AS review_count, coalesce(r.rating_sum, 0) AS rating_sum,
       round(r.rating_sum::numeric / r.review_count, 2) AS avg_rating,
       coalesce(r.histogram, json_build_array(0, 0, 0, 0, 0)) AS rating_histogram,
       coalesce(related.products, '[]'::json) AS related_products,
       coalesce(prices.history, '[]'::json) AS price_history,
       coalesce(recent.reviews, '[]'::json) AS recent_reviews
FROM catalog_product p
JOIN catalog_seller s ON s.id = p.seller_id
LEFT JOIN ratings r ON r.product_id = p.id
LEFT JOIN related ON related.product_id = p.id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('id', h.id, 'price', h.price, 'changed_at', h.changed_at)
                    ORDER BY h.changed_at DESC, h.id DESC) AS history
    FROM (SELECT id, price, changed_at FROM catalog_pricechange
          WHERE product_id = p.id ORDER BY changed_at DESC, id DESC LIMIT 30) h
) prices ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'id', v.id, 'author', u.username, 'rating', v.rating, 'body', v.body,
               'created_at', v.created_at, 'edited_at', v.edited_at)
               ORDER BY v.created_at DESC, v.id DESC) AS reviews
    FROM (SELECT id, author_id, rating, body, created_at, edited_at FROM reviews_review
          WHERE product_id = p.id AND NOT is_hidden
          ORDER BY created_at DESC, id DESC LIMIT 5) v
    JOIN auth_user u ON u.id = v.author_id
) recent ON true
"""


def floor(log: Any) -> dict[str, Any]:
    runs = []
    with setup.connect(setup.WRITE_URL) as connection:
        for _ in range(2):  # the second run has the tables in the cache, as a rebuild's would
            started = time.perf_counter()
            connection.execute(FLOOR_QUERY)
            elapsed = time.perf_counter() - started
            rows = connection.execute("SELECT count(*) FROM bench_floor").fetchone()[0]
            connection.execute("DROP TABLE bench_floor")
            runs.append(elapsed)
    log(f"  set-based floor: {rows} rows in {min(runs):.2f} s (first run {runs[0]:.2f} s)")
    return {"query": FLOOR_QUERY.strip(), "rows": rows, "seconds": min(runs), "runs": runs}


def has_rebuild_command() -> bool:
    from django.core.management import get_commands

    return "rebuild_projections" in get_commands()


def rebuild(arguments: list[str], timeout: float, log: Any) -> dict[str, Any]:
    """Time ``manage.py rebuild_projections [arguments]``."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "manage.py", "rebuild_projections", *arguments],
        cwd=setup.ROOT,
        env=setup.bench_env(CELERY_BROKER_URL=""),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"rebuild_projections failed:\n{result.stdout}\n{result.stderr}")
    log(f"  rebuild_projections {' '.join(arguments)}: {elapsed:.1f} s")
    return {"seconds": elapsed, "arguments": arguments, "output": result.stdout[-2000:]}


def replay(budget: float, log: Any) -> dict[str, Any]:
    """Replay the log from an empty read side with ``run_projectors --once``.

    Stopped after ``budget`` seconds if it has not finished (a stopped batch
    rolls back): its rate is then measured on the events applied so far, and
    the time for the whole log is extrapolated from it, as an estimate.
    """
    from django.db.models import Sum

    from eventstore.models import Event
    from projections.models import Checkpoint
    from projections.registry import PROJECTIONS

    events = Event.objects.count()
    passes = sum(projection.partition_count() for projection in PROJECTIONS.values())
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_projectors", "--once"],
        cwd=setup.ROOT,
        env=setup.bench_env(CELERY_BROKER_URL=""),
        stdout=subprocess.DEVNULL,
    )
    try:
        process.wait(budget)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(60)
    elapsed = time.perf_counter() - started
    complete = process.returncode == 0
    if not complete and process.returncode not in (-15, 143):
        raise RuntimeError(f"run_projectors --once exited with {process.returncode}")
    read = Checkpoint.objects.aggregate(total=Sum("events_applied"))["total"] or 0
    full = elapsed if complete else elapsed * events * passes / max(read, 1)
    result = {
        "events": events,
        "partition_passes": passes,
        "complete": complete,
        "seconds": elapsed,
        "events_read": read,
        "full_replay_seconds": full,
        "events_per_second": events / full,
    }
    how = "" if complete else f" (stopped after {elapsed:.0f} s; whole log extrapolated)"
    log(
        f"  replay from empty: {events} events x {passes} partitions in {full:.0f} s"
        f"{how}: {events / full:.0f} events/s"
    )
    return result
