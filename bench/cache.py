"""The reference's cache-aside baseline against the read model's lag.

Staleness: prices change through the service at a steady rate while readers
poll the same products two ways: cache-aside (Redis ``GET``, and on a miss the
five-table query and ``SET`` with a TTL, exactly as the reference writes it)
and the read-model row, kept up to date by ``run_projectors``. Every price is
unique, so each observation says which write it reflects: a write's delay is
the time from its commit until a reader first sees it (or a later one), and
a read is stale when a newer write had committed before it.

Thundering herd: many threads read the hot product through cache-aside with a
short TTL; each time the key expires, every thread that misses runs the
five-table query at once. Counted: queries per expiry, the most running at
once, and what the readers' latency does meanwhile; the same threads then
read the read-model row.
"""

import bisect
import itertools
import statistics
import threading
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from bench import naive, setup
from bench.stats import curve_ms, summary_ms

POLL_SECONDS = 0.005
SAMPLE_SECONDS = 0.01
# Prices the probe writes, unique across probes: every observation names its write.
_prices = itertools.count(90000)


class _CacheAside:
    def __init__(self, ttl: float) -> None:
        import redis

        self.redis = redis.Redis.from_url(setup.CACHE_URL)
        self.write = setup.connect(setup.WRITE_URL)
        self.ttl_ms = max(1, round(ttl * 1000))

    def five_table_row(self, product_id: int) -> dict[str, Any]:
        cursor = self.write.execute(naive.FIVE_TABLE_QUERY, [product_id], prepare=True)
        row = cursor.fetchone()
        return dict(zip([column.name for column in cursor.description], row, strict=True))

    def price(self, product_id: int) -> tuple[str, bool]:
        """(the price the page would show, whether it came from the database)."""
        key = f"bench:price:{product_id}"
        cached = self.redis.get(key)
        if cached is not None:
            return (cached.decode() if isinstance(cached, bytes) else str(cached)), False
        price = str(self.five_table_row(product_id)["price"])
        self.redis.set(key, price, px=self.ttl_ms)
        return price, True

    def close(self) -> None:
        self.write.close()
        self.redis.close()


def staleness(size: Any, product_ids: list[int], log: Any) -> dict[str, Any]:
    import redis

    from catalog.services import product_change_price

    redis.Redis.from_url(setup.CACHE_URL).flushdb()
    writes: dict[int, list[tuple[float, str]]] = defaultdict(list)  # product -> (commit, price)
    observed: dict[str, list[tuple[float, int, str]]] = {"cache_aside": [], "read_model": []}
    latest: dict[str, dict[int, str]] = {"cache_aside": {}, "read_model": {}}
    stop = threading.Event()
    origin = time.monotonic()

    def cache_reader() -> None:
        cache = _CacheAside(size.cache_ttl)
        try:
            while not stop.is_set():
                for product_id in product_ids:
                    price, _ = cache.price(product_id)
                    observed["cache_aside"].append((time.monotonic() - origin, product_id, price))
                    latest["cache_aside"][product_id] = price
                time.sleep(POLL_SECONDS)
        finally:
            cache.close()

    def read_model_reader() -> None:
        with setup.connect(setup.READ_URL) as connection:
            while not stop.is_set():
                rows = connection.execute(
                    "SELECT product_id, price FROM projections_productreadmodel "
                    "WHERE product_id = ANY(%s)",
                    [product_ids],
                    prepare=True,
                ).fetchall()
                now = time.monotonic() - origin
                observed["read_model"].extend((now, pid, str(price)) for pid, price in rows)
                latest["read_model"].update((pid, str(price)) for pid, price in rows)
                time.sleep(POLL_SECONDS)

    readers = [threading.Thread(target=cache_reader), threading.Thread(target=read_model_reader)]
    for reader in readers:
        reader.start()
    time.sleep(1.0)  # both paths warm, the cache filled
    interval = 1 / size.writes_per_second
    count = int(size.cache_seconds * size.writes_per_second)
    started = time.monotonic()
    for n in range(count):
        delay = started + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        product_id = product_ids[n % len(product_ids)]
        # Spelt as the database returns it.
        price = (Decimal(next(_prices)) / 100).quantize(Decimal("0.01"))
        product_change_price(product_id=product_id, price=price)
        writes[product_id].append((time.monotonic() - origin, str(price)))
    last_write = time.monotonic()
    # Readers go on until both paths show every product's last price (or give up).
    final = {pid: ws[-1][1] for pid, ws in writes.items()}
    deadline = last_write + size.cache_ttl + 3 * size.cache_seconds
    while time.monotonic() < deadline and not all(
        latest[path].get(pid) == price for path in latest for pid, price in final.items()
    ):
        time.sleep(0.05)
    settled = {
        path: all(latest[path].get(pid) == price for pid, price in final.items()) for path in latest
    }
    settled_after = time.monotonic() - last_write
    stop.set()
    for reader in readers:
        reader.join()
    end = time.monotonic() - origin
    return {
        path: _visibility(writes, observations, end) for path, observations in observed.items()
    } | {
        "ttl_seconds": size.cache_ttl,
        "writes": count,
        "writes_per_second": size.writes_per_second,
        "all_visible": settled,
        "waited_after_last_write_seconds": settled_after,
    }


def _visibility(
    writes: dict[int, list[tuple[float, str]]],
    observations: list[tuple[float, int, str]],
    end: float,
) -> dict[str, Any]:
    """When each write became visible, and how stale the reads were."""
    index = {pid: {price: i for i, (_, price) in enumerate(ws)} for pid, ws in writes.items()}
    commits = {pid: [at for at, _ in ws] for pid, ws in writes.items()}
    first_seen: dict[tuple[int, int], float] = {}
    ages: list[float] = []
    stale = reads = 0
    for at, pid, price in observations:
        if pid not in writes:
            continue
        reads += 1
        seen = index[pid].get(price, -1)  # -1: the price before the bench's writes
        committed = bisect.bisect_right(commits[pid], at) - 1  # newest write committed by now
        if seen < committed:
            stale += 1
            ages.append(at - commits[pid][seen + 1])
        else:
            ages.append(0.0)
        for i in range(seen, -1, -1):
            if (pid, i) in first_seen:
                break
            first_seen[(pid, i)] = at
    delays, timeline, unseen = [], [], 0
    for pid, ws in writes.items():
        for i, (committed_at, _) in enumerate(ws):
            if (pid, i) in first_seen:
                # The commit is timed when the service returns, a hair after it.
                delay = max(0.0, first_seen[(pid, i)] - committed_at)
                delays.append(delay)
                timeline.append((committed_at, 1000 * delay))
            else:
                unseen += 1
    timeline.sort()
    return {
        "visible_after": summary_ms(delays),
        "visible_after_curve_ms": curve_ms(delays),
        "never_seen": unseen,
        "reads": reads,
        "stale_reads": stale,
        "stale_fraction": stale / reads if reads else 0.0,
        "read_age": summary_ms(ages),
        "timeline": timeline,
    }


def herd(size: Any, product_id: int, log: Any) -> dict[str, Any]:
    """Cache-aside on one hot key with a short TTL, then the read model, same threads."""
    import redis

    redis.Redis.from_url(setup.CACHE_URL).flushdb()
    lock = threading.Lock()
    state = {"running": 0, "peak": 0}
    misses: list[tuple[float, float]] = []  # (start, duration) of each five-table query
    reads: list[tuple[float, float, bool]] = []  # (start, latency, missed)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    origin = time.monotonic()

    def reader() -> None:
        cache = _CacheAside(size.herd_ttl)
        key = f"bench:herd:{product_id}"
        try:
            while not stop.is_set():
                started = time.monotonic()
                if cache.redis.get(key) is None:
                    with lock:
                        state["running"] += 1
                        state["peak"] = max(state["peak"], state["running"])
                    row = cache.five_table_row(product_id)
                    cache.redis.set(key, str(row), px=cache.ttl_ms)
                    finished = time.monotonic()
                    with lock:
                        state["running"] -= 1
                        misses.append((started - origin, finished - started))
                    reads.append((started - origin, finished - started, True))
                else:
                    reads.append((started - origin, time.monotonic() - started, False))
        finally:
            cache.close()

    def sampler() -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - origin, state["running"]))
            time.sleep(SAMPLE_SECONDS)

    threads = [threading.Thread(target=reader) for _ in range(size.herd_threads)]
    threads.append(threading.Thread(target=sampler))
    for thread in threads:
        thread.start()
    time.sleep(size.herd_seconds)
    stop.set()
    for thread in threads:
        thread.join()
    bursts = _bursts([start for start, _ in misses], size.herd_ttl / 2)
    in_burst = [latency for start, latency, _ in reads if _within(start, bursts)]
    cache_aside = {
        "threads": size.herd_threads,
        "ttl_seconds": size.herd_ttl,
        "reads": len(reads),
        "five_table_queries": len(misses),
        "queries_per_expiry": [count for _, _, count in bursts],
        "peak_concurrent_queries": state["peak"],
        "read_latency": summary_ms([latency for _, latency, _ in reads]),
        "read_latency_during_expiry": summary_ms(in_burst),
        "read_latency_curve_ms": curve_ms([latency for _, latency, _ in reads]),
        "concurrency_timeline": samples,
    }
    log(
        f"  cache-aside: {len(misses)} five-table queries in {len(bursts)} expiries "
        f"(mean {statistics.fmean(cache_aside['queries_per_expiry'] or [0]):.1f} per expiry), "
        f"peak {state['peak']} at once; read p99 {cache_aside['read_latency']['p99_ms']:.1f} ms"
    )
    read_model = _read_model_readers(size, product_id)
    log(f"  read model:  read p99 {read_model['read_latency']['p99_ms']:.2f} ms")
    return {"cache_aside": cache_aside, "read_model": read_model}


def _read_model_readers(size: Any, product_id: int) -> dict[str, Any]:
    latencies: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        mine: list[float] = []
        with setup.connect(setup.READ_URL) as connection:
            while not stop.is_set():
                started = time.monotonic()
                connection.execute(naive.READ_MODEL_QUERY, [product_id], prepare=True).fetchone()
                mine.append(time.monotonic() - started)
        latencies.extend(mine)

    threads = [threading.Thread(target=reader) for _ in range(size.herd_threads)]
    for thread in threads:
        thread.start()
    time.sleep(min(size.herd_seconds, 10))
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "threads": size.herd_threads,
        "reads": len(latencies),
        "database_queries_per_read": 1,
        "read_latency": summary_ms(latencies),
        "read_latency_curve_ms": curve_ms(latencies),
    }


def _bursts(starts: list[float], gap: float) -> list[tuple[float, float, int]]:
    """Group the five-table queries into expiries: (first start, last start, count)."""
    bursts: list[tuple[float, float, int]] = []
    for start in sorted(starts):
        if bursts and start - bursts[-1][1] < gap:
            first, _, count = bursts[-1]
            bursts[-1] = (first, start, count + 1)
        else:
            bursts.append((start, start, 1))
    return bursts


def _within(moment: float, bursts: list[tuple[float, float, int]]) -> bool:
    return any(first <= moment <= last + 0.001 for first, last, _ in bursts)
