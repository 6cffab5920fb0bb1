"""The Procfile, run by honcho as an operator's process manager would, with
the production settings on PostgreSQL and a Redis of the test's own: the
release step migrates; then beat's sweep and the worker project a product
whose wake-up never reached them, web takes a command through the API and
the worker projects it; and SIGTERM to honcho stops every process they
started and frees the port."""

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests import factories
from tests.projections.processes import ROOT, RedisServer, database_url, free_port, http

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

STARTUP_SECONDS = 60
PROJECTION_SECONDS = 30
SHUTDOWN_SECONDS = 60
# Every process honcho starts inherits this variable: how the test finds them
# all afterwards, whatever process group or session they put themselves in.
MARKER = "STOREFRONT_PROCFILE_TEST"


def production_environment(
    tmp_path: Path, broker_url: str, port: int, marker: str
) -> dict[str, str]:
    """What an operator sets (README "Running on PostgreSQL, Redis and Celery"),
    pointed at the test databases; the venv's bin first on PATH, as an
    activated venv or a platform's buildpack has it."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "READ_DATABASE_", "CELERY_", "REDIS_"))
    }
    environment.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url("default"),
        READ_DATABASE_URL=database_url("read"),
        CELERY_BROKER_URL=broker_url,
        STOREFRONT_VAR_DIR=str(tmp_path),
        PORT=str(port),
        WEB_CONCURRENCY="2",
        PROJECTION_SWEEP_SECONDS="1",
        PYTHONUNBUFFERED="1",
        **{MARKER: marker},
    )
    return environment


def honcho(*arguments: str, environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    empty_env_file = log.parent / "empty.env"  # no .env of a developer's checkout
    empty_env_file.touch()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "honcho",
            "--procfile",
            str(ROOT / "Procfile"),
            "--app-root",
            str(ROOT),
            "--env",
            str(empty_env_file),
            "start",
            *arguments,
        ],
        cwd=ROOT,
        env=environment,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def marked_processes(marker: str) -> list[int]:
    """The processes still running (not zombies) whose environment carries ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if f"{MARKER}={marker}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
    return found


def worker_processes(marker: str) -> list[int]:
    """The Celery worker's processes among them: its main process and its pool."""
    found = []
    for pid in marked_processes(marker):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(part.endswith(b"celery") for part in command[:2]) and b"worker" in command:
                found.append(pid)
    return found


@contextlib.contextmanager
def cleaned_up(marker: str) -> Iterator[None]:
    """Whatever the test's end, nothing it started outlives it."""
    try:
        yield
    finally:
        for pid in marked_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def request(port: int, method: str, path: str, **kwargs) -> tuple[int, dict[str, str], bytes]:
    """A request as the TLS proxy in front of production passes it on."""
    headers = {"X-Forwarded-Proto": "https", **kwargs.pop("headers", {})}
    return http(method, f"http://127.0.0.1:{port}{path}", headers=headers, **kwargs)


def wait_for_web(port: int, honcho_process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if honcho_process.poll() is not None:
            pytest.fail(f"honcho exited before web answered:\n{tail(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            status, _, _ = request(port, "GET", "/healthz")
            if status in (200, 503):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"web did not answer on port {port}:\n{tail(log)}")
        time.sleep(0.1)


def wait_for_product(port: int, product_id: int, price: str, **headers: str) -> None:
    """Until the API reads ``price`` from the product's row in the read model."""
    deadline = time.monotonic() + PROJECTION_SECONDS
    while True:
        status, _, body = request(port, "GET", f"/api/products/{product_id}/", headers=headers)
        if status == 200 and json.loads(body)["price"] == price:
            return
        assert time.monotonic() < deadline, f"never projected: {status} {body[:300]!r}"
        time.sleep(0.2)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # Connections the server closed may linger in TIME_WAIT; a listener may not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_the_procfile_releases_serves_projects_and_stops_on_sigterm(broker, tmp_path):
    """``broker`` is the Redis of this process's commands; the Procfile's
    processes get another one, so the product made here never wakes them."""
    port = free_port()
    marker = secrets.token_hex(8)
    redis = RedisServer()
    redis.start()
    environment = production_environment(tmp_path, redis.url, port, marker)
    log = tmp_path / "honcho.log"
    staff_token = Token.objects.create(user=factories.catalog_staff()).key
    product = factories.product(price="19.99")

    try:
        with cleaned_up(marker):
            release = honcho("release", environment=environment, log=log)
            assert release.wait(STARTUP_SECONDS) == 0, tail(log)
            assert "Both databases are migrated." in log.read_text(errors="replace")

            processes = honcho("web", "worker", "beat", environment=environment, log=log)
            wait_for_web(port, processes, log)
            # Only beat's sweep tells the worker about the product.
            wait_for_product(port, product.pk, "19.99")

            # A command through the API; the worker, woken by web, projects it.
            status, _, body = request(
                port,
                "POST",
                f"/api/products/{product.pk}/price/",
                body={"price": "27.50"},
                headers={"Authorization": f"Token {staff_token}"},
            )
            assert status == 202, body
            consistency_token = json.loads(body)["consistency_token"]
            wait_for_product(
                port, product.pk, "27.50", **{"X-Consistency-Token": consistency_token}
            )
            assert processes.poll() is None, tail(log)
            # The worker's pool: a child per partition (4 by default) and one
            # for the sellers', beside the worker's main process.
            assert "PROJECTION_PARTITIONS" not in environment
            assert len(worker_processes(marker)) == 1 + 4 + 1, tail(log)

            processes.send_signal(signal.SIGTERM)
            processes.wait(SHUTDOWN_SECONDS)
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            while marked_processes(marker):
                assert time.monotonic() < deadline, (
                    f"still running after SIGTERM: {marked_processes(marker)}\n{tail(log)}"
                )
                time.sleep(0.1)
            assert port_is_free(port), f"port {port} is still taken after honcho stopped"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        redis.stop()
