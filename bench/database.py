"""Database level: the five-table query against reading the read-model row.

For the hot product and a typical one, with the schema as Django migrates it
(which includes the indexes the reference's first fix adds) and without
them. Each query runs as a prepared statement over one psycopg connection,
repeatedly, timed on the client from execute to the last row fetched.
"""

import json
import time
from typing import Any

from bench import naive, setup
from bench.stats import curve_ms, summary_ms

WARM_UP = 3
MIN_RUNS = 5


def _time(connection: Any, query: str, product_id: int, runs: int, budget: float) -> list[float]:
    samples: list[float] = []
    with connection.cursor() as cursor:
        for _ in range(WARM_UP):
            cursor.execute(query, [product_id], prepare=True)
            if not cursor.fetchall():
                raise RuntimeError(f"no row for product {product_id}")
        deadline = time.perf_counter() + budget
        while len(samples) < runs and (len(samples) < MIN_RUNS or time.perf_counter() < deadline):
            started = time.perf_counter()
            cursor.execute(query, [product_id], prepare=True)
            cursor.fetchall()
            samples.append(time.perf_counter() - started)
    return samples


def _plan(connection: Any, query: str, product_id: int) -> dict[str, Any]:
    """The server's own view of one execution: time and buffers touched."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}".replace("%s", str(int(product_id)))
        )
        raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    top = plan["Plan"]
    return {
        "execution_ms": plan["Execution Time"],
        "shared_hit_blocks": top.get("Shared Hit Blocks", 0),
        "shared_read_blocks": top.get("Shared Read Blocks", 0),
    }


def _measure(connection: Any, query: str, product_id: int, size: Any) -> dict[str, Any]:
    samples = _time(connection, query, product_id, size.db_runs, size.db_seconds)
    return {
        **summary_ms(samples),
        "curve_ms": curve_ms(samples),
        **_plan(connection, query, product_id),
    }


def run(size: Any, products: dict[str, int], log: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"query": naive.FIVE_TABLE_QUERY.strip(), "runs": {}}
    with setup.connect(setup.WRITE_URL) as write, setup.connect(setup.READ_URL) as read:
        for which, product_id in products.items():
            for key, connection, query in (
                (f"read_model:{which}", read, naive.READ_MODEL_QUERY),
                (f"five_table:{which}", write, naive.FIVE_TABLE_QUERY),
            ):
                results["runs"][key] = _measure(connection, query, product_id, size)
                _log(log, key, results["runs"][key])
        with naive.without_first_fix_indexes(write) as restore:
            results["dropped"] = restore
            for which, product_id in products.items():
                key = f"five_table_no_index:{which}"
                results["runs"][key] = _measure(write, naive.FIVE_TABLE_QUERY, product_id, size)
                _log(log, key, results["runs"][key])
    return results


def _log(log: Any, key: str, row: dict[str, Any]) -> None:
    log(f"  {key:<28} n={row['n']:<5} p50 {row['p50_ms']:9.3f} ms  p99 {row['p99_ms']:9.3f} ms")
