"""The Markdown report and the PNG plots of one suite run (``results.json``)."""

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def get(results: Any, *keys: Any) -> Any:
    """``results[k1][k2]...`` (dict keys or list indexes), or None where one is missing."""
    for key in keys:
        in_dict = isinstance(results, dict) and key in results
        in_list = (
            isinstance(results, list)
            and isinstance(key, int)
            and -len(results) <= key < len(results)
        )
        if not (in_dict or in_list):
            return None
        results = results[key]
    return results


def ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "n/a"
    value = numerator / denominator
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def percent(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "n/a"
    return f"{100 * numerator / denominator:.0f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def headline(results: dict[str, Any]) -> str:
    """The few figures that tell the story; the README quotes this table."""
    db = get(results, "database", "runs") or {}
    http = get(results, "http", "throughput") or {}
    fixed = get(results, "http", "fixed_rate") or {}
    stale = get(results, "cache", "staleness") or {}
    herd = get(results, "cache", "herd") or {}

    def db_p50(key: str) -> float | None:
        return get(db, key, "p50_ms")

    def rps(key: str) -> float | None:
        return get(http, key, "rps")

    rows = [
        [
            "DB query, hot product, p50 (Django's FK indexes)",
            ms(db_p50("read_model:hot")),
            ms(db_p50("five_table:hot")),
            ratio(db_p50("five_table:hot"), db_p50("read_model:hot")),
        ],
        [
            "DB query, hot product, p50 (no product_id indexes)",
            ms(db_p50("read_model:hot")),
            ms(db_p50("five_table_no_index:hot")),
            ratio(db_p50("five_table_no_index:hot"), db_p50("read_model:hot")),
        ],
        [
            "DB query, typical product, p50 (FK indexes)",
            ms(db_p50("read_model:typical")),
            ms(db_p50("five_table:typical")),
            ratio(db_p50("five_table:typical"), db_p50("read_model:typical")),
        ],
        [
            "HTTP req/s, hot product: `GET /api/products/{id}/` vs naive endpoint (FK indexes)",
            rate(rps("api:hot")),
            rate(rps("naive:hot")),
            ratio(rps("api:hot"), rps("naive:hot")),
        ],
        [
            "HTTP req/s, hot product, detail page vs naive endpoint without indexes",
            rate(rps("page:hot")),
            rate(rps("naive_no_index:hot")),
            ratio(rps("page:hot"), rps("naive_no_index:hot")),
        ],
        [
            f"HTTP p99 at {rate(get(results, 'http', 'half_ceiling_rps'))} req/s "
            "(half the bare ceiling), hot product",
            ms(get(fixed, "api:hot", "p99_ms")),
            ms(get(fixed, "naive:hot", "p99_ms"))
            + f" (at {rate(get(fixed, 'naive:hot', 'target_rate'))} req/s)",
            "",
        ],
        *(
            [
                f"Price change visible to readers, p99, {WORKLOADS[name]} (cache-aside: TTL "
                f"{get(stale, name, 'ttl_seconds')} s)",
                ms(get(stale, name, "read_model", "visible_after", "p99_ms")),
                ms(get(stale, name, "cache_aside", "visible_after", "p99_ms")),
                "",
            ]
            for name in WORKLOADS
            if name in stale
        ),
        [
            "Five-table queries when the hot key expires (cache-aside, "
            f"{get(herd, 'cache_aside', 'threads')} readers)",
            "0",
            _per_expiry(herd),
            "",
        ],
    ]
    return table(["", "read model", "naive / cache-aside", "ratio"], rows)


WORKLOADS = {
    "random": "random products",
    "popular": "most reviewed products (most recommended: largest fan-out)",
}


def _per_expiry(herd: dict[str, Any]) -> str:
    counts = get(herd, "cache_aside", "queries_per_expiry")
    if not counts:
        return "n/a"
    peak = get(herd, "cache_aside", "peak_concurrent_queries")
    return f"{sum(counts) / len(counts):.0f} per expiry (peak {peak} at once)"


def goals(results: dict[str, Any]) -> str:
    """Issue 4's and issue 18's targets, for information: the suite never fails on speed."""
    http = get(results, "http", "throughput") or {}
    api, bare = get(http, "api:hot", "rps"), get(http, "bare:hot", "rps")
    ceiling = get(http, "ceiling:hot", "rps")
    naive, page = get(http, "naive:hot", "rps"), get(http, "page:hot", "rps")
    not_modified = get(http, "api_304:hot", "rps")
    p99 = get(results, "http", "fixed_rate", "api:hot", "p99_ms")

    def met(ok: bool | None) -> str:
        return "n/a" if ok is None else "yes" if ok else "**no**"

    def at_least(measured: float | None, base: float | None, share: float) -> str:
        return met(measured / base >= share if measured and base else None)

    shares = [
        ("API detail >= 85% of the bare ceiling's req/s", api, bare, 0.85),
        ("Detail page >= 70% of the bare ceiling's req/s", page, bare, 0.7),
        ("API conditional GET (304) >= the bare ceiling's req/s", not_modified, bare, 1.0),
        ("API detail >= 80% of the in-project ceiling", api, ceiling, 0.8),
    ]
    rows = [
        [goal, percent(value, base), at_least(value, base, share)]
        for goal, value, base, share in shares
    ]
    rows.append(
        [
            "API p99 <= 10 ms at half the bare ceiling's req/s",
            ms(p99),
            met(p99 <= 10 if p99 is not None else None),
        ]
    )
    rows.append(
        [
            "API >= 10x the naive endpoint, hot product, FK indexes",
            ratio(api, naive),
            at_least(api, naive, 10),
        ]
    )
    return table(["goal (issues 4 and 18)", "measured", "met"], rows)


def _machine(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    return (
        f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB; "
        f"PostgreSQL {m.get('postgresql')}, Redis {m.get('redis')}, Python {m.get('python')}, "
        f"Django {m.get('django')}, gunicorn {m.get('gunicorn')}, {m.get('wrk')}; "
        f"commit {m.get('git_commit')}."
    )


def _load(results: dict[str, Any]) -> str:
    """How busy the machine was. The bench's own work counts too (the seed and the
    replay keep both cores busy); other work at the start of a section skews it."""
    load = results.get("load_average") or {}
    cores = get(results, "machine", "cores") or 1
    before = get(load, "before", 0, 0)
    if before is None:
        return ""
    starts = ", ".join(
        f"{name} {pair[0][0]:.1f}" for name, pair in load.items() if name != "before" and pair
    )
    text = (
        f"Load average (1 min, {cores} cores) before the run: {before:.1f}; at the start of "
        f"each section: {starts}."
    )
    if before > 0.75 * cores:
        text += " **Other work was running when the run began: figures are low.**"
    return text


def _data(results: dict[str, Any]) -> str:
    size = results.get("size", {})
    checked = get(results, "http", "checked") or {}
    parts = [
        f"{size.get('sellers')} sellers, {size.get('products'):,} products, "
        f"{size.get('reviews', 0) + size.get('hot_reviews', 0):,} reviews "
        f"(the hot product has {size.get('hot_reviews'):,}), "
        f"{size.get('price_changes'):,} price changes"
    ]
    if get(results, "seed", "events"):
        parts.append(
            f"{results['seed']['events']:,} events, written by `seed_demo --bulk` in "
            f"{results['seed']['seconds']:.0f} s"
        )
    if checked:
        parts.append(
            f"hot product {get(checked, 'hot', 'product_id')} "
            f"({get(checked, 'hot', 'review_count'):,} reviews), typical product "
            f"{get(checked, 'typical', 'product_id')} ({get(checked, 'typical', 'review_count'):,})"
        )
    return "; ".join(parts) + "."


def database_section(results: dict[str, Any]) -> str:
    runs = get(results, "database", "runs")
    if not runs:
        return "_Not measured in this run._"
    rows = []
    for key, label in (
        ("read_model", "read-model row (read DB)"),
        ("five_table", "five-table query, Django's indexes"),
        ("five_table_no_index", "five-table query, no product_id indexes"),
    ):
        for which in ("hot", "typical"):
            row = runs.get(f"{key}:{which}")
            if row is None:
                continue
            base = get(runs, f"read_model:{which}", "p50_ms")
            rows.append(
                [
                    label,
                    which,
                    str(row["n"]),
                    ms(row["p50_ms"]),
                    ms(row["p99_ms"]),
                    ms(row["execution_ms"]),
                    f"{row['shared_hit_blocks'] + row['shared_read_blocks']:,}",
                    ratio(row["p50_ms"], base) if key != "read_model" else "1x",
                ]
            )
    return "\n\n".join(
        [
            table(
                [
                    "query",
                    "product",
                    "runs",
                    "p50",
                    "p99",
                    "server time (one EXPLAIN ANALYZE)",
                    "buffers",
                    "p50 / read model",
                ],
                rows,
            ),
            "The five-table query is the reference's, made valid: its price history "
            "`json_agg(price) ... ORDER BY date DESC LIMIT 30` is rejected by PostgreSQL "
            "(and its LIMIT would cut the aggregate's one row, not the prices); the valid "
            'form orders and limits in a subquery and aggregates in that order. "No '
            'product_id indexes" drops every index leading with product_id on reviews '
            "and recommendations: what the reference's first fix would add, and Django "
            "already creates for foreign keys. Timed on the client over one connection, "
            "prepared statements, execute to last row.",
        ]
    )


def http_section(results: dict[str, Any]) -> str:
    http = get(results, "http")
    if not http:
        return "_Not measured in this run._"
    throughput = http["throughput"]
    ceiling = get(throughput, "ceiling:hot", "rps")
    bare = get(throughput, "bare:hot", "rps")
    labels = {
        "bare:hot": "bare ceiling: plain Django, no middleware, the stored answer by key",
        "ceiling:hot": "in-project ceiling: the stored answer by key, the project's middleware",
        "api_304:hot": "`GET /api/products/{id}/` with `If-None-Match`: 304",
        "page_304:hot": "detail page with `If-None-Match`: 304",
        "api:hot": "`GET /api/products/{id}/`, hot",
        "api:typical": "`GET /api/products/{id}/`, typical",
        "page:hot": "detail page `/products/{id}/`, hot",
        "page:typical": "detail page, typical",
        "cached:hot": "cache-aside (Redis, hits), hot",
        "naive:hot": "naive five-table endpoint, hot",
        "naive:typical": "naive five-table endpoint, typical",
        "naive_no_index:hot": "naive, no product_id indexes, hot",
        "naive_no_index:typical": "naive, no product_id indexes, typical",
    }
    rows = [
        [
            labels.get(key, key),
            rate(row["rps"]),
            percent(row["rps"], bare),
            percent(row["rps"], ceiling),
            ms(row["p50_ms"]),
            ms(row["p95_ms"]),
            ms(row["p99_ms"]),
        ]
        for key, row in throughput.items()
    ]
    fixed = [
        [
            labels.get(key, key),
            rate(row["target_rate"]),
            rate(row["achieved_rate"]),
            ms(row["p50_ms"]),
            ms(row["p95_ms"]),
            ms(row["p99_ms"]),
            ms(row["max_ms"]),
            f"overloaded: {row['skipped']:,} never sent" if row.get("skipped") else "",
        ]
        for key, row in http["fixed_rate"].items()
    ]
    return "\n\n".join(
        [
            f"Throughput: wrk, 1 thread, {http['wrk_connections']} connections, gunicorn with 2 "
            "sync workers; latencies here include waiting for a free worker.",
            table(
                [
                    "endpoint",
                    "req/s",
                    "of bare ceiling",
                    "of in-project ceiling",
                    "p50",
                    "p95",
                    "p99",
                ],
                rows,
            ),
            "Latency at a fixed rate (`bench/loadgen.py`, open loop: each request timed from "
            "when it was due, as wrk2 would; Debian has no wrk2). The API and the ceilings at "
            "half the bare ceiling's throughput, the page at that or half its own, whichever is "
            "lower, the naive endpoint at half its own.",
            table(["endpoint", "target req/s", "achieved", "p50", "p95", "p99", "max", ""], fixed),
        ]
    )


def commands_section(results: dict[str, Any]) -> str:
    commands = get(results, "commands")
    if not commands:
        return "_Not measured in this run._"
    labels = {
        "idle": "idle",
        "under_naive_reads": "while wrk reads the naive endpoint (write DB)",
        "under_read_model_reads": "while wrk reads the API (read DB)",
    }
    rows = []
    for key, row in commands.items():
        for command in ("review_add", "product_change_price"):
            figures = row[command]
            rows.append(
                [
                    f"`{command}`",
                    labels.get(key, key),
                    str(figures["n"]),
                    ms(figures["p50_ms"]),
                    ms(figures["p99_ms"]),
                ]
            )
    return table(["command", "condition", "n", "p50", "p99"], rows)


def cache_section(results: dict[str, Any]) -> str:
    stale = get(results, "cache", "staleness")
    herd = get(results, "cache", "herd")
    if not stale or not herd:
        return "_Not measured in this run._"
    rows = []
    for workload, (key, label) in itertools.product(
        [name for name in WORKLOADS if name in stale],
        [("read_model", "read model (`run_projectors`)"), ("cache_aside", "cache-aside")],
    ):
        row = stale[workload][key]
        rows.append(
            [
                f"{WORKLOADS[workload]}, on {stale[workload]['pages_showing_each_product']:.0f} "
                "pages each",
                label,
                ms(get(row, "visible_after", "p50_ms")),
                ms(get(row, "visible_after", "p99_ms")),
                ms(get(row, "visible_after", "max_ms")),
                f"{100 * row['stale_fraction']:.1f}%",
                ms(get(row, "read_age", "p99_ms")),
                str(row["never_seen"]),
            ]
        )
    first = next(iter(stale.values()))
    cache, model = herd["cache_aside"], herd["read_model"]
    counts = cache["queries_per_expiry"]
    herd_rows = [
        [
            "cache-aside, hot key, TTL " + f"{cache['ttl_seconds']} s",
            str(cache["threads"]),
            f"{sum(counts) / max(len(counts), 1):.0f} (max {max(counts, default=0)})",
            str(cache["peak_concurrent_queries"]),
            ms(cache["read_latency"]["p50_ms"]),
            ms(cache["read_latency"]["p99_ms"]),
            ms(cache["read_latency_during_expiry"].get("p99_ms")),
        ],
        [
            "read model",
            str(model["threads"]),
            "0 (one row read per request)",
            "-",
            ms(model["read_latency"]["p50_ms"]),
            ms(model["read_latency"]["p99_ms"]),
            "-",
        ],
    ]
    return "\n\n".join(
        [
            f"Staleness: {first['writes']} price changes through the service at "
            f"{first['writes_per_second']} per second, round-robin over a set of products, "
            "while readers poll them both ways: cache-aside with a TTL of "
            f"{first['ttl_seconds']} s, and the read-model row kept by `run_projectors` "
            "(LISTEN/NOTIFY, default settings). Twice: random products, and the most "
            "reviewed ones, which are also the most recommended, so each of their price "
            "changes rewrites every row that lists them. A write is visible once a reader "
            "sees it (or a newer one); a read is stale when a newer price had committed "
            "before it.",
            table(
                [
                    "products",
                    "path",
                    "visible after, p50",
                    "p99",
                    "max",
                    "stale reads",
                    "age of stale data, p99 of reads",
                    "never seen",
                ],
                rows,
            ),
            " ".join(
                f"{WORKLOADS[name].split(' (')[0].capitalize()}: every price showed on both paths "
                f"{stale[name]['waited_after_last_write_seconds']:.1f} s after the last write"
                + ("." if all(stale[name]["all_visible"].values()) else " (the wait ran out).")
                for name in WORKLOADS
                if name in stale and "all_visible" in stale[name]
            ),
            "Thundering herd: reader threads on the hot product through cache-aside with a "
            "short TTL (so the key expires several times); on each expiry every reader that "
            "misses runs the five-table query. The same threads then read the read-model row.",
            table(
                [
                    "path",
                    "readers",
                    "five-table queries per expiry",
                    "most at once",
                    "read p50",
                    "read p99",
                    "read p99 during an expiry",
                ],
                herd_rows,
            ),
        ]
    )


def rebuild_section(results: dict[str, Any]) -> str:
    replay = get(results, "project", "replay")
    rebuild = get(results, "rebuild") or {}
    floor = get(rebuild, "floor", "seconds")
    rows = []
    if replay:
        how = (
            f"{replay['seconds']:.1f} s"
            if replay["complete"]
            else f"{replay['full_replay_seconds']:,.0f} s (extrapolated from "
            f"{replay['seconds']:.0f} s: {replay['events_read']:,} of "
            f"{replay['events'] * replay['partition_passes']:,} partition-events)"
        )
        rows.append(
            [
                f"replay the log from empty (`run_projectors --once`, {replay['partition_passes']} "
                "partition passes)",
                how,
                f"{replay['events_per_second']:,.0f} events/s",
                ratio(replay["full_replay_seconds"], floor),
            ]
        )
    for key, label in (
        ("snapshot", "`rebuild_projections` (from a snapshot of the write model)"),
        ("from_events", "`rebuild_projections --from-events`"),
    ):
        row = rebuild.get(key)
        if row:
            rate = ""
            if key == "from_events" and replay:
                rate = f"{replay['events'] / row['seconds']:,.0f} events/s"
            time_ = f"{row['seconds']:.1f} s"
            if len(row.get("runs", [])) > 1:
                time_ += f" (better of {', '.join(f'{run:.1f}' for run in row['runs'])} s)"
            rows.append([label, time_, rate, ratio(row["seconds"], floor)])
    if rebuild and "snapshot" not in rebuild:
        rows.append(["`rebuild_projections`", "skipped: no such command", "", ""])
    if floor is not None:
        rows.append(
            [
                "set-based floor: one SQL statement on the write DB (`bench/rebuild.py`)",
                f"{floor:.1f} s",
                f"{rebuild['floor']['rows']:,} rows",
                "1x",
            ]
        )
    if not rows:
        return "_Not measured in this run._"
    return table(["rebuild", "time", "rate", "/ floor"], rows)


def projector_section(results: dict[str, Any]) -> str:
    projector = get(results, "projector")
    if not projector:
        return "_Not run in this run._"
    rows = [
        [
            f"engine, {row['partitions']} partition(s)",
            str(row["events"]),
            f"{row['seconds']:.1f} s",
            f"{row['events_per_second']:,.0f}",
            f"{row['review_events_per_second']:,.0f}"
            if row.get("review_events_per_second")
            else "",
        ]
        for row in projector.get("replay", [])
    ]
    naive = projector.get("naive")
    if naive:
        rows.append(
            [
                "naive: recompute AVG per review event",
                str(naive["events"]),
                f"{naive['seconds']:.1f} s",
                f"{naive['events_per_second']:,.0f}",
                f"{naive['events_per_second']:,.0f}",
            ]
        )
    latency = [
        [
            row["runner"],
            str(row.get("partitions", "")),
            str(row["commands"]),
            ms(row["p50_ms"]),
            ms(row["p99_ms"]),
            ms(row["max_ms"]),
        ]
        for row in projector.get("latency", [])
    ]
    return "\n\n".join(
        [
            "`bench/projector.py` on its own databases and data (seeded through the services).",
            "One process replays the whole log into empty tables, partition after "
            "partition (each its own slice of the log); the last column times the batches "
            "that hold review events only.",
            table(
                ["projector", "events", "time", "events/s", "review events/s"],
                rows,
            ),
            f"Commands at a steady {projector.get('rate', 200)}/s (reviews, price and stock "
            "changes) from two threads; visible = every product partition's checkpoint "
            "has passed the command's event.",
            table(
                ["runner", "partitions", "commands", "commit-to-visible p50", "p99", "max"],
                latency,
            ),
        ]
    )


PLOTS = ["http_throughput.png", "http_latency.png", "db_latency.png", "freshness.png", "herd.png"]


def write(results: dict[str, Any], out: Path) -> None:
    plots = _plots(results, out)
    size = results.get("size", {}).get("name", "?")
    errors = results.get("errors") or {}
    parts = [
        f"# Benchmarks: {size}",
        f"Run {results.get('started_at')} to {results.get('finished_at')} with "
        f"`python -m bench all --size {size}`, on {_machine(results)} PostgreSQL, "
        "Redis, gunicorn, the load generators and the bench itself share the machine.",
        f"Data: {_data(results)}",
        _load(results),
    ]
    if errors:
        parts.append("**Failed sections:** " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    parts += [
        "## Headline",
        headline(results),
        goals(results),
        *(f"![{name}]({name})" for name in plots if name == "http_throughput.png"),
        "## Database: the five-table query against the read-model row",
        database_section(results),
        *(f"![{name}]({name})" for name in plots if name == "db_latency.png"),
        "## HTTP under gunicorn",
        http_section(results),
        *(f"![{name}]({name})" for name in plots if name == "http_latency.png"),
        "## Command latency (through the services)",
        commands_section(results),
        "## Freshness: the read model's lag against cache-aside",
        cache_section(results),
        *(f"![{name}]({name})" for name in plots if name in ("freshness.png", "herd.png")),
        "## Rebuild and replay",
        rebuild_section(results),
        "## Projector throughput and commit-to-visible latency",
        projector_section(results),
    ]
    (out / "report.md").write_text("\n\n".join(part for part in parts if part) + "\n")


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    made = []
    for name, draw in (
        ("http_throughput.png", _throughput_plot),
        ("http_latency.png", _latency_plot),
        ("db_latency.png", _db_plot),
        ("freshness.png", _freshness_plot),
        ("herd.png", _herd_plot),
    ):
        if draw(results, out / name):
            made.append(name)
    return made


def _save(figure: Any, path: Path) -> bool:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return True


def _throughput_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    throughput = get(results, "http", "throughput")
    if not throughput:
        return False
    keys = list(throughput)
    values = [throughput[key]["rps"] for key in keys]
    colours = [
        "#2e7d32"
        if key.startswith(("api", "page"))
        else "#9e9e9e"
        if key.startswith(("ceiling", "cached"))
        else "#c62828"
        for key in keys
    ]
    figure, axes = plt.subplots(figsize=(9, 4.5))
    bars = axes.barh(keys[::-1], values[::-1], color=colours[::-1])
    axes.set_xscale("log")
    axes.set_xlabel("requests per second (log scale), gunicorn 2 sync workers, 2 cores")
    axes.set_title("Detail endpoints: read model (green) vs naive five-table query (red)")
    for bar, value in zip(bars, values[::-1], strict=True):
        axes.text(
            value * 1.05,
            bar.get_y() + bar.get_height() / 2,
            f"{value:,.0f}",
            va="center",
            fontsize=8,
        )
    return _save(figure, path)


def _percentile_axis(axes: Any) -> None:
    ticks = [0.5, 0.9, 0.99, 0.999, 0.9999]
    axes.set_xscale("log")
    axes.set_xticks([1 / (1 - t) for t in ticks])
    axes.set_xticklabels([f"p{100 * t:g}" for t in ticks])
    axes.set_yscale("log")
    axes.set_ylabel("latency (ms, log scale)")


def _curves(axes: Any, curves: dict[str, list[list[float]]]) -> None:
    for label, curve in curves.items():
        points = [(1 / (1 - f), value) for f, value in curve if f < 1]
        if points:
            axes.plot(*zip(*points, strict=True), label=label)
    _percentile_axis(axes)
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)


def _latency_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    fixed = get(results, "http", "fixed_rate")
    if not fixed:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5))
    _curves(
        axes, {f"{key} @ {row['target_rate']:.0f}/s": row["curve_ms"] for key, row in fixed.items()}
    )
    axes.set_title("HTTP latency distribution at a fixed rate (open loop)")
    return _save(figure, path)


def _db_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    runs = get(results, "database", "runs")
    if not runs:
        return False
    figure, axes = plt.subplots(figsize=(9, 4.5))
    _curves(axes, {key: row["curve_ms"] for key, row in runs.items()})
    axes.set_title("Database: five-table query vs read-model row, latency distribution")
    return _save(figure, path)


def _freshness_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    stale = get(results, "cache", "staleness")
    if not stale:
        return False
    names = [name for name in WORKLOADS if name in stale]
    figure, panels = plt.subplots(1, len(names), figsize=(11, 4.5), sharey=True, squeeze=False)
    for axes, name in zip(panels[0], names, strict=True):
        for key, label, colour in (
            ("cache_aside", f"cache-aside, TTL {stale[name]['ttl_seconds']} s", "#c62828"),
            ("read_model", "read model (run_projectors)", "#2e7d32"),
        ):
            timeline = stale[name][key]["timeline"]
            if timeline:
                xs = [at for at, _ in timeline]
                ys = [max(delay, 0.1) for _, delay in timeline]
                axes.scatter(xs, ys, s=8, label=label, color=colour)
        axes.set_yscale("log")
        axes.set_xlabel("time of the price change (s into the run)")
        axes.set_title(f"{WORKLOADS[name].split(' (')[0]}", fontsize=10)
        axes.legend(fontsize=8)
        axes.grid(True, which="both", alpha=0.3)
    panels[0][0].set_ylabel("until readers see it (ms, log scale)")
    figure.suptitle("Lag over time: how long each price change stays invisible")
    return _save(figure, path)


def _herd_plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    herd = get(results, "cache", "herd", "cache_aside")
    if not herd:
        return False
    timeline = herd["concurrency_timeline"]
    figure, axes = plt.subplots(figsize=(9, 3.5))
    if timeline:
        axes.step(*zip(*timeline, strict=True), where="post", color="#c62828")
    axes.set_xlabel("seconds")
    axes.set_ylabel("five-table queries running")
    axes.set_title(
        f"Thundering herd: {herd['threads']} readers of one key with a {herd['ttl_seconds']} s TTL "
        "(the read model runs none)"
    )
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


SECTION_WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "database": database_section,
    "http": http_section,
    "commands": commands_section,
    "cache": cache_section,
    "rebuild": rebuild_section,
    "projector": projector_section,
}
