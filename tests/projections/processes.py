"""Real processes for the integration tests: a private Redis, Celery workers,
Celery beat and run_projectors, all pointed at the test databases."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections

from eventstore import eventlog
from projections.models import Checkpoint
from projections.registry import PROJECTIONS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url(alias: str, *, port: int | None = None) -> str:
    """The URL of the test database behind ``alias``; ``port`` reaches it through a proxy."""
    settings = connections[alias].settings_dict
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = port or settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request to a server of the test's own: status, headers and body,
    whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class RedisServer:
    """A redis-server of the test's own, so stopping it disturbs nothing else."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def process_env(broker_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=database_url("default"),
        READ_DATABASE_URL=database_url("read"),
        CELERY_BROKER_URL=broker_url,
        PROJECTION_SWEEP_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    """A solo-pool worker: one process, so SIGKILL lands on the running batch."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-P",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_beat(env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "-l",
            "WARNING",
            "-s",
            str(workdir / "beat-schedule"),
        ],
        cwd=ROOT,
        env=env,
        stdout=(workdir / "beat.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_run_projectors(
    env: dict[str, str], log: Path, *arguments: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_projectors", *arguments],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for_log(log: Path, text: str, timeout: float = 30) -> None:
    """Wait until ``text`` shows up in the process's log (run_projectors says
    "Projecting" once its signal handlers are installed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never showed up in {log}")


def start_gunicorn(
    env: dict[str, str], port: int, log: Path, *, workers: int = 2, options: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """The site under gunicorn on 127.0.0.1 only; returns once it answers.
    ``options`` are more of gunicorn's command-line options. It leads a
    process group of its own, so ``kill`` takes its workers with it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--error-logfile",
            "-",
            "--log-level",
            "warning",
            "--graceful-timeout",
            "2",
            *options,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        time.sleep(0.1)
    kill(process)
    raise RuntimeError("gunicorn did not start")


def batches_running() -> int:
    """Projector batches holding their partition's lock right now (PostgreSQL),
    seen from the read database: each batch holds one advisory lock."""
    with connections["read"].cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM pg_locks
               WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
        )
        return int(cursor.fetchone()[0])


def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process and wait for it to end; then SIGKILL what
    it leaves of a process group it leads (gunicorn's workers, orphaned by a
    SIGKILL of their master, went on serving and holding connections to the
    test databases into the tests after)."""
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(30)
    # A process that leads no group: there is no group by its number.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def process_table() -> list[tuple[int, str, int, int]]:
    """Every process as ``(pid, state, parent pid, process group)``, from
    ``/proc`` (state "Z": a zombie, ended and not yet reaped)."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        table.append((int(entry), fields[0], int(fields[1]), int(fields[2])))
    return table


def group_members(group: int) -> list[int]:
    """The live processes of a process group (zombies left out: they hold
    nothing, and this machine's init may be slow to reap them)."""
    return [pid for pid, state, _, pgrp in process_table() if pgrp == group and state != "Z"]


@contextlib.contextmanager
def running(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            kill(process)


def caught_up() -> bool:
    return passed(eventlog.head())


def passed(position: eventlog.LogPosition) -> bool:
    """Whether every partition of every projector has a checkpoint, at or
    past ``position`` (before a projector has made its checkpoints, none is
    past anything)."""
    expected = sum(projection.partition_count() for projection in PROJECTIONS.values())
    checkpoints = list(Checkpoint.objects.all())
    if len(checkpoints) < expected:
        return False
    return all(
        eventlog.LogPosition(checkpoint.transaction_id, checkpoint.position) >= position
        for checkpoint in checkpoints
    )


def wait_until_caught_up(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if caught_up():
            return
        time.sleep(0.1)
    raise AssertionError(f"the projectors did not catch up within {timeout} s")


def wait_until_passed(position: eventlog.LogPosition, timeout: float, why: str) -> None:
    """Wait until every partition has applied everything up to ``position``
    (while commands go on, the head keeps moving: ``wait_until_caught_up``
    would wait for a writer to stop)."""
    deadline = time.monotonic() + timeout
    while not passed(position):
        assert time.monotonic() < deadline, why
        time.sleep(0.1)
