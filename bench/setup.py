"""Point Django at the benchmark's own databases and start it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

WRITE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_storefront"
)
READ_URL = os.environ.get(
    "BENCH_READ_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_storefront_read"
)
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="false",
        DATABASE_URL=WRITE_URL,
        READ_DATABASE_URL=READ_URL,
        CELERY_BROKER_URL=BROKER_URL,
        PROJECTIONS_LOG_LEVEL="ERROR",
    )
    env.update(extra)
    return env


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-q", "-U", "postgres", "-h", "127.0.0.1", "-c", sql, "postgres"], check=True
    )


def recreate_databases() -> None:
    for url in (WRITE_URL, READ_URL):
        name = url.rsplit("/", 1)[-1]
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"CREATE DATABASE {name}")


def start_django(**extra: str) -> None:
    os.environ.update(bench_env(**extra))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate_all", verbosity=0)


def manage(*args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=bench_env(**extra)
    )


def celery(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args, "-l", "ERROR"],
        cwd=ROOT,
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
