"""Hostile clients and an unrelated long transaction, against a running stack.

    python -m bench safety [--baseline DIR] [--seconds N] [--out FILE]

Runs the stack of this checkout (and, with ``--baseline``, of another
checkout of the project, such as ``git worktree add /tmp/before <commit>``)
the way production runs it: production settings, gunicorn with 2 workers of
4 threads, ``run_projectors``, Redis for the throttle counts; each on fresh
databases of its own seeded with ``seed_demo --bulk`` (small), then measures:

1. a normal reader's latency (``bench.loadgen``, a fixed rate of anonymous
   ``GET /api/products/{id}/``), alone and while 16 hostile clients (wrk,
   16 connections, each connection a client address of its own behind the
   trusted proxy) hammer the same endpoint with a consistency token far past
   the log's head; and a real client's read of its own write meanwhile;
2. how long a review takes to show while an unrelated transaction (one row
   into ``auth_group``) stays open for up to 20 s, and what ``/healthz`` and
   ``projection_status`` say meanwhile.

It prints both checkouts side by side and writes the figures as JSON. It
never fails because something was slow; it fails on errors.
"""

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import setup
from bench.loadgen import fixed_rate
from bench.stats import summary_ms

HOSTILE_CLIENTS = 16
READER_RATE = 50.0
UNRELATED_SECONDS = 20.0
WRITE_URL = "postgres://postgres@127.0.0.1:5432/bench_safety"
READ_URL = "postgres://postgres@127.0.0.1:5432/bench_safety_read"
BROKER_URL = "redis://127.0.0.1:6379/7"
HOSTILE_LUA = Path(__file__).with_name("hostile.lua")
SEED = ("--sellers", "10", "--products", "300", "--reviews", "6000", "--hot-reviews", "2000")


def log(message: str) -> None:
    print(message, flush=True)


class Stack:
    """One checkout's processes on its own databases."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="bench-safety-"))

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY="bench-" + "k" * 50,
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DATABASE_URL=WRITE_URL,
            READ_DATABASE_URL=READ_URL,
            CELERY_BROKER_URL=BROKER_URL,
            PROJECTIONS_LOG_LEVEL="ERROR",
            # Behind one proxy: each hostile connection is a client address of its own.
            TRUSTED_PROXY_COUNT="1",
            PYTHONPATH=str(self.tree),
        )
        env.update(extra)
        return env

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.tree,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (0, 1):
            raise RuntimeError(f"manage.py {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def prepare(self) -> dict[str, Any]:
        for url in (WRITE_URL, READ_URL):
            name = setup.database_name(url)
            setup._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            setup._psql(f"CREATE DATABASE {name}")
        self.manage("migrate_all")
        self.manage("seed_demo", "--bulk", "--seed", "1", *SEED)
        self.manage("run_projectors", "--once")
        out = self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model;"
            "from rest_framework.authtoken.models import Token;"
            "from projections.models import ProductReadModel as R;"
            "u = get_user_model().objects.create_user('bench-reader', password='x-' * 8);"
            "print('TOKEN', Token.objects.create(user=u).key);"
            "rows = R.objects.filter(is_active=True).order_by('product_id');"
            "print('PRODUCTS', *rows.values_list('product_id', flat=True)[:40])",
        )
        token = next(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN"))
        products = next(
            [int(pk) for pk in line.split()[1:]]
            for line in out.splitlines()
            if line.startswith("PRODUCTS")
        )
        return {"api_token": token, "products": products}

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        output = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *args], cwd=self.tree, env=self.env(), stdout=output, stderr=output
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        port = setup.free_port()
        self.start("manage.py", "run_projectors", name="run_projectors")
        self.start(
            *("-m", "gunicorn", "config.wsgi", "-w", "2", "--threads", "4"),
            *("-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"),
            name="gunicorn",
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError):
                    setup.http_get(f"{base}/healthz", timeout=5)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start; see {self.logs}")
                time.sleep(0.2)
            yield base
        finally:
            self.stop()


def request(
    method: str, url: str, *, body: dict[str, Any] | None = None, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    prepared = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        prepared.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(prepared, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), None


def post_review(base: str, token: str, product_id: int) -> tuple[int, str]:
    status, _, body = request(
        "POST",
        f"{base}/api/reviews/",
        body={"product": product_id, "rating": 4, "body": "Measured by the safety bench."},
        headers={"Authorization": f"Token {token}"},
    )
    if status != 201:
        raise RuntimeError(f"POST /api/reviews/ answered {status}")
    return status, body["consistency_token"]


def hostile_token(tree: Path) -> str:
    """A token far past the log's head, in the shape that checkout reads."""
    far = "999999999999-999999999"  # a transaction id and position far past the log's head
    if (tree / "projections" / "throttling.py").exists() or (tree / "queries").exists():
        return f"{far}.1abcde." + "A" * 43  # signed tokens: a forged one
    return far


@contextlib.contextmanager
def hostile_clients(url: str, token: str) -> Iterator[None]:
    env = dict(os.environ, HOSTILE_TOKEN=token, HOSTILE_CLIENTS=str(HOSTILE_CLIENTS))
    # The clients run on this machine's cores too; lowest priority keeps their
    # own CPU (not the server's answers to them) from slowing the server, as
    # clients elsewhere would not.
    process = subprocess.Popen(
        [
            *("nice", "-n", "19"),
            *("wrk", "-t1", f"-c{HOSTILE_CLIENTS}", "-d3600s", "--timeout", "10s"),
            *("-s", str(HOSTILE_LUA), url),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.0)  # let them tie up what they can
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        out, _ = process.communicate(timeout=30)
        log("    hostile wrk: " + " ".join(out.decode().split())[:200])


def reader(url: str, seconds: float) -> dict[str, Any]:
    run = fixed_rate(url, READER_RATE, seconds)
    return {**summary_ms(run["latencies"]), "errors": run["errors"], "skipped": run["skipped"]}


def measure_hostile(stack: Stack, base: str, data: dict[str, Any], seconds: float) -> dict:
    product = data["products"][0]
    url = f"{base}/api/products/{product}/"
    reader(url, 2.0)  # warm up: every worker thread has imported and connected
    log(f"  reader alone: {READER_RATE:g} GET/s for {seconds:g} s")
    alone = reader(url, seconds)
    log(f"  reader with {HOSTILE_CLIENTS} hostile clients")
    with hostile_clients(url, hostile_token(stack.tree)):
        attacked = reader(url, seconds)
        _, token = post_review(base, data["api_token"], data["products"][1])
        started = time.perf_counter()
        status, headers, _ = request(
            "GET",
            f"{base}/api/products/{data['products'][1]}/",
            headers={"X-Consistency-Token": token},
        )
        own_write = {
            "status": status,
            "stale": headers.get("X-Read-Model-Stale") == "true",
            "ms": 1000 * (time.perf_counter() - started),
        }
    return {"alone": alone, "attacked": attacked, "own_write_under_attack": own_write}


def measure_unrelated_transaction(stack: Stack, base: str, data: dict[str, Any]) -> dict:
    product = data["products"][2]
    url = f"{base}/api/products/{product}/"
    _, _, before = request("GET", url, headers={})
    with setup.connect(WRITE_URL) as other:
        other.autocommit = False
        other.execute("INSERT INTO auth_group (name) VALUES (%s)", [secrets.token_hex(8)])
        opened = time.monotonic()
        post_review(base, data["api_token"], product)
        posted = time.monotonic()
        seen_after = None
        while time.monotonic() - opened < UNRELATED_SECONDS:
            _, _, body = request("GET", url, headers={})
            if body["review_count"] > before["review_count"]:
                seen_after = time.monotonic() - posted
                break
            time.sleep(0.01)
        health, _, health_body = request("GET", f"{base}/healthz", headers={})
        status = stack.manage("projection_status")
        other.rollback()
    return {
        "review_visible_after_s": seen_after,
        "held_open_s": UNRELATED_SECONDS,
        "healthz_status": health,
        "healthz_body_status": (health_body or {}).get("status"),
        "projection_status_says_stalled": "stalled behind" in status,
    }


def run_tree(tree: Path, seconds: float) -> dict[str, Any]:
    log(f"== {tree}")
    stack = Stack(tree)
    data = stack.prepare()
    with stack.running() as base:
        hostile = measure_hostile(stack, base, data, seconds)
        log("  an unrelated transaction held open while a review is posted")
        unrelated = measure_unrelated_transaction(stack, base, data)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()
    return {"tree": str(tree), "commit": commit, "hostile": hostile, "unrelated": unrelated}


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.1f}" if key in summary else "-"


def report(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | " + " | ".join(f"{run['commit']}" for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(run) for run in runs) + " |")

    for phase in ("alone", "attacked"):
        row(
            f"reader p50 / p99 ms ({phase})",
            lambda run, p=phase: (
                f"{_ms(run['hostile'][p], 'p50_ms')} / {_ms(run['hostile'][p], 'p99_ms')}"
            ),
        )
    row(
        "goal: attacked p99 <= 2 x alone p99 + 20 ms",
        lambda run: (
            "met"
            if run["hostile"]["attacked"].get("p99_ms", 1e9)
            <= 2 * run["hostile"]["alone"]["p99_ms"] + 20
            else "not met"
        ),
    )
    row("reader errors (attacked)", lambda run: str(run["hostile"]["attacked"]["errors"]))
    row(
        "own write read under attack: ms, stale",
        lambda run: (
            f"{run['hostile']['own_write_under_attack']['ms']:.0f}, "
            f"{run['hostile']['own_write_under_attack']['stale']}"
        ),
    )
    row(
        "review visible with an unrelated transaction open (s)",
        lambda run: (
            "not within 20 s"
            if run["unrelated"]["review_visible_after_s"] is None
            else f"{run['unrelated']['review_visible_after_s']:.3f}"
        ),
    )
    row(
        "/healthz meanwhile",
        lambda run: (
            f"{run['unrelated']['healthz_status']} {run['unrelated']['healthz_body_status']}"
        ),
    )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench safety")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure first")
    parser.add_argument("--seconds", type=float, default=10.0, help="per reader run")
    parser.add_argument("--out", type=Path, default=setup.RESULTS / "safety.json")
    options = parser.parse_args(argv)
    trees = [options.baseline.resolve()] if options.baseline else []
    trees.append(setup.ROOT)
    runs = [run_tree(tree, options.seconds) for tree in trees]
    table = report(runs)
    log(table)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps({"machine": setup.machine(), "runs": runs, "table": table}, indent=2)
    )
    log(f"wrote {options.out}")
