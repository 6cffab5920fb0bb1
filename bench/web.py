"""HTTP: the read API and the detail page against the naive endpoint and two ceilings.

Everything runs under gunicorn (2 sync workers, 127.0.0.1) with the bench
settings (``bench.urls``: the app's URLs plus the naive, ceiling and cached
endpoints) and ``DATABASE_POOL=true``, the production option that keeps
connections open. Beside it, a second gunicorn serves the bare ceiling:
plain Django with no middleware (``bench.bare_settings``) serving the API's
own bytes, stored as one row by key in the same read database, which is what
Django itself can do. wrk (one thread, a few connections) measures how many
requests per second each endpoint takes, and conditional GETs that answer
304; ``bench.loadgen`` then measures latency at a fixed rate: the API and the
ceilings at half the bare ceiling's throughput, the page and the naive
endpoint at half their own (or that, whichever is lower).
"""

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import naive, setup
from bench.loadgen import fixed_rate
from bench.stats import curve_ms, summary_ms

WRK_REPORT = Path(__file__).with_name("wrk_report.lua")
WRK_CONNECTIONS = 8
WRK_INSTALL = (
    "wrk is needed for the HTTP benchmark. On Debian or Ubuntu: sudo apt-get install -y wrk "
    "(elsewhere: https://github.com/wg/wrk)."
)
PATHS = {
    "api": "/api/products/{id}/",
    "page": "/products/{id}/",
    "ceiling": "/bench/ceiling/{id}/",
    "bare": "/bench/ceiling/{id}/",  # on the bare server
    "naive": "/bench/naive/{id}/",
    "cached": "/bench/cached/{id}/",
}


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit(WRK_INSTALL)


def wrk(
    url: str,
    seconds: float,
    connections: int = WRK_CONNECTIONS,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One wrk run; its summary and latency distribution (ms)."""
    sent = [
        option for name, value in (headers or {}).items() for option in ("-H", f"{name}: {value}")
    ]
    result = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", *sent),
            *("--timeout", "60s", "--latency", "-s", str(WRK_REPORT), url),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    match = re.search(r"^WRKJSON (.*)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed on {url}: {result.stdout}\n{result.stderr}")
    raw = json.loads(match.group(1))
    duration = raw["duration_us"] / 1e6
    percentiles = {p: us / 1000 for p, us in raw["latency_us"]["percentiles"]}
    return {
        "url": url,
        "connections": connections,
        "seconds": duration,
        "requests": raw["requests"],
        "rps": raw["requests"] / duration,
        "errors": raw["errors"],
        "p50_ms": percentiles[50],
        "p95_ms": percentiles[95],
        "p99_ms": percentiles[99],
        "max_ms": raw["latency_us"]["max"] / 1000,
        "curve_ms": [(p / 100, ms) for p, ms in percentiles.items()],
    }


class BackgroundLoad:
    """wrk hammering one URL until stopped (for commands under read load)."""

    def __init__(self, url: str, connections: int = WRK_CONNECTIONS) -> None:
        self.url = url
        self.connections = connections
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "BackgroundLoad":
        self.process = subprocess.Popen(
            ["wrk", "-t1", f"-c{self.connections}", "-d3600s", "--timeout", "60s", self.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let it reach full load
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)


def _store_ceiling_rows(base: str, product_ids: list[int]) -> None:
    """The ceiling serves the API's own bytes for the product, one row by key."""
    from bench.bare_urls import CEILING_TABLE

    with setup.connect(setup.READ_URL) as connection:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {CEILING_TABLE} "
            "(id bigint PRIMARY KEY, body text NOT NULL)"
        )
        for product_id in product_ids:
            status, body = setup.http_get(base + PATHS["api"].format(id=product_id))
            if status != 200:
                raise RuntimeError(f"GET api detail of {product_id} answered {status}")
            connection.execute(
                f"INSERT INTO {CEILING_TABLE} VALUES (%s, %s) "
                "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                [product_id, body.decode()],
            )


def _verify(bases: dict[str, str], products: dict[str, int]) -> dict[str, Any]:
    """Every endpoint answers 200 with the same figures before anything is timed."""
    checked = {}
    for which, product_id in products.items():
        answers = {}
        for name, path in PATHS.items():
            status, body = setup.http_get(bases[name] + path.format(id=product_id))
            if status != 200:
                raise RuntimeError(f"{name} for the {which} product answered {status}")
            answers[name] = body
        api = json.loads(answers["api"])
        five_table = json.loads(answers["naive"])
        if api["review_count"] != five_table["review_count"]:
            raise RuntimeError(
                f"read model and write model disagree on the {which} product: "
                f"{api['review_count']} != {five_table['review_count']} reviews"
            )
        if not answers["ceiling"] == answers["bare"] == answers["api"]:
            raise RuntimeError("the ceilings do not serve the API's bytes")
        if api["name"].encode() not in answers["page"]:
            raise RuntimeError(f"the detail page of the {which} product lacks its name")
        checked[which] = {
            "product_id": product_id,
            "review_count": api["review_count"],
            "bytes": {name: len(body) for name, body in answers.items()},
        }
    return checked


def _etag(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=60) as response:
        etag: str | None = response.headers["ETag"]
    return etag


def _check_errors(label: str, run: dict[str, Any]) -> None:
    errors = run["errors"]
    if errors["status"] or errors["connect"]:
        raise RuntimeError(
            f"{label}: {errors['status']} non-2xx answers, {errors['connect']} refused"
        )


def run(size: Any, products: dict[str, int], log: Any) -> dict[str, Any]:
    require_wrk()
    results: dict[str, Any] = {
        "throughput": {},
        "fixed_rate": {},
        "wrk_connections": WRK_CONNECTIONS,
    }
    with (
        setup.gunicorn(workers=2, DATABASE_POOL="true") as base,
        setup.gunicorn(
            workers=2,
            settings="bench.bare_settings",
            wsgi="bench.bare_wsgi",
            ready="/bench/ceiling/0/",
            DATABASE_POOL="true",
        ) as bare_base,
    ):
        bases = {name: bare_base if name == "bare" else base for name in PATHS}
        _store_ceiling_rows(base, list(products.values()))
        results["checked"] = _verify(bases, products)

        def load(
            name: str, which: str, key: str | None = None, headers: dict[str, str] | None = None
        ) -> None:
            url = bases[name] + PATHS[name].format(id=products[which])
            wrk(url, 1, connections=2, headers=headers)  # warm up
            measured = wrk(url, size.http_seconds, headers=headers)
            _check_errors(f"{name} ({which})", measured)
            results["throughput"][key or f"{name}:{which}"] = measured
            log(
                f"  {key or name + ':' + which:<24} {measured['rps']:>9.1f} req/s  "
                f"p50 {measured['p50_ms']:.1f} ms  p99 {measured['p99_ms']:.1f} ms"
            )

        for name in ("bare", "ceiling", "api", "page", "cached", "naive"):
            for which in products:
                if name in ("bare", "ceiling", "cached") and which != "hot":
                    continue
                load(name, which)
        # A conditional GET of what the client has: 304 Not Modified.
        for name in ("api", "page"):
            etag = _etag(base + PATHS[name].format(id=products["hot"]))
            if etag is None:
                log(f"  {name}_304:hot: no ETag to send back, not measured")
                continue
            load(name, "hot", key=f"{name}_304:hot", headers={"If-None-Match": etag})
        with (
            setup.connect(setup.WRITE_URL) as connection,
            naive.without_first_fix_indexes(connection),
        ):
            for which in products:
                load("naive", which, key=f"naive_no_index:{which}")

        # Half the bare ceiling's rate: what Django itself could take.
        half = results["throughput"]["bare:hot"]["rps"] / 2
        rates = {
            "bare:hot": half,
            "ceiling:hot": half,
            "api:hot": half,
            "api:typical": half,
            "page:hot": min(half, results["throughput"]["page:hot"]["rps"] / 2),
            "naive:hot": results["throughput"]["naive:hot"]["rps"] / 2,
            "naive:typical": results["throughput"]["naive:typical"]["rps"] / 2,
        }
        for key, rate in rates.items():
            name, which = key.split(":")
            url = bases[name] + PATHS[name].format(id=products[which])
            measured = fixed_rate(url, rate, size.rate_seconds)
            if measured["errors"]:
                raise RuntimeError(
                    f"{key} at {rate:.0f} req/s: {measured['errors']} failed requests"
                )
            # Requests the client gave up sending because a thousand were already
            # waiting: the server could not take this rate. A figure, not an error.
            measured["overloaded"] = bool(measured["skipped"])
            latencies = measured.pop("latencies")
            results["fixed_rate"][key] = {
                **measured,
                **summary_ms(latencies),
                "curve_ms": curve_ms(latencies),
            }
            row = results["fixed_rate"][key]
            log(
                f"  {key:<24} at {rate:>7.0f} req/s: p50 {row['p50_ms']:.1f} ms  "
                f"p99 {row['p99_ms']:.1f} ms"
                + (f"  (overloaded: {row['skipped']} never sent)" if row["overloaded"] else "")
            )
    results["half_ceiling_rps"] = half
    return results
