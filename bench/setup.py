"""Point Django at the benchmark's own databases and start it, and the servers around it."""

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

WRITE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_storefront"
)
READ_URL = os.environ.get(
    "BENCH_READ_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_storefront_read"
)
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
CACHE_URL = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/8")
HOST = "127.0.0.1"  # load tests never leave this machine


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="false",
        DATABASE_URL=WRITE_URL,
        READ_DATABASE_URL=READ_URL,
        CELERY_BROKER_URL=BROKER_URL,
        PROJECTIONS_LOG_LEVEL="ERROR",
        # The load comes from one address here: a limit no run reaches, so
        # every request is still counted as a real client's would be.
        QUERY_THROTTLE_RATE="1000000/s",
    )
    env.update(extra)
    return env


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-U", "postgres", "-h", "127.0.0.1", "-c", sql, "postgres"], check=True
    )


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def recreate_databases() -> None:
    for url in (WRITE_URL, READ_URL):
        name = database_name(url)
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"CREATE DATABASE {name}")


def start_django(**extra: str) -> None:
    os.environ.update(bench_env(**extra))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_all", verbosity=0)


def manage(*args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=bench_env(**extra))


def celery(*args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args, "-l", "ERROR"],
        cwd=ROOT,
        env=bench_env(**extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def connect(url: str) -> Any:
    """A psycopg connection in autocommit mode, outside Django."""
    import psycopg

    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def http_get(url: str, timeout: float = 60.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def gunicorn(
    workers: int = 2,
    *,
    threads: int = 1,
    settings: str = "bench.settings",
    wsgi: str = "config.wsgi",
    ready: str = "/healthz",
    **extra: str,
) -> Iterator[str]:
    """The app under gunicorn (sync workers) on 127.0.0.1 with the bench URLs
    (or another settings module and WSGI application, answering ``ready``);
    yields its base URL."""
    port = free_port()
    log = RESULTS / "tmp" / "gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = bench_env(DJANGO_SETTINGS_MODULE=settings, BENCH_CACHE_URL=CACHE_URL, **extra)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", wsgi, "-w", str(workers)),
                *("--threads", str(threads)),
                *("-b", f"{HOST}:{port}", "--graceful-timeout", "5", "--timeout", "120"),
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}; see {log}")
            try:
                http_get(f"{base}{ready}", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "absent"
    result = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _postgres() -> tuple[str, dict[str, str]]:
    try:
        # The server's maintenance database: the bench's may not exist yet.
        with connect(WRITE_URL.rsplit("/", 1)[0] + "/postgres") as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
            settings = dict(
                connection.execute(
                    "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                    "('shared_buffers', 'work_mem', 'max_wal_size', 'synchronous_commit', "
                    "'max_parallel_workers_per_gather', 'jit')"
                ).fetchall()
            )
    except Exception as error:
        return f"unreachable ({error})", {}
    return version, settings


def _redis_version() -> str:
    import redis

    try:
        return str(redis.Redis.from_url(CACHE_URL).info("server")["redis_version"])
    except Exception as error:
        return f"unreachable ({error})"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import django

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    postgres, postgres_settings = _postgres()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": postgres,
        "postgresql_settings": postgres_settings,
        "redis": _redis_version(),
        "wrk": _wrk_version(),
        "gunicorn": _package_version("gunicorn"),
        "psycopg": _package_version("psycopg"),
        "git_commit": commit,
    }


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"
