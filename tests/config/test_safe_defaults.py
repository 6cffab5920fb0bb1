"""Nothing serves the development defaults (DEBUG on, a published secret key)
where others can reach it: gunicorn and Celery default to the production
settings, which refuse to start without a secret key, and ``runserver`` with
the local settings serves on a loopback address only."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from demo.management.commands.runserver import check_address
from tests.projections.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def bare_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without a settings module, a secret key,
    DEBUG or databases: what someone who set nothing starts with."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "READ_DATABASE_", "CELERY_", "REDIS_"))
    }
    environment.update(STOREFRONT_VAR_DIR=str(tmp_path), **extra)
    return environment


def run_until_exit(command: list[str], environment: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` (a server) to its end; a server still running after a
    minute did not refuse: it is stopped, and that is a failure."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[2:]} started instead of refusing:\n{output[-2000:]}")
    return process.returncode, output


@pytest.mark.slow
def test_gunicorn_with_no_settings_in_the_environment_refuses_to_start(tmp_path):
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{free_port()}"]
    status, output = run_until_exit(command, bare_environment(tmp_path))
    assert status != 0
    assert "Set DJANGO_SECRET_KEY" in output


@pytest.mark.slow
def test_a_celery_worker_with_no_settings_in_the_environment_refuses_to_start(tmp_path):
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo"]
    status, output = run_until_exit(command, bare_environment(tmp_path))
    assert "Set DJANGO_SECRET_KEY" in output
    assert status != 0


@pytest.mark.slow
def test_runserver_with_the_local_fallback_refuses_an_address_others_can_reach(tmp_path):
    command = [sys.executable, "manage.py", "runserver", f"0.0.0.0:{free_port()}", "--noreload"]
    status, output = run_until_exit(command, bare_environment(tmp_path))
    assert status == 1
    assert "Refusing to serve on 0.0.0.0" in output
    assert "DJANGO_DEBUG and DJANGO_SECRET_KEY" in output


@pytest.mark.slow
def test_runserver_with_the_local_fallback_serves_on_loopback(tmp_path):
    """What ``make run`` does: the guard lets 127.0.0.1 through and the server answers."""
    port = free_port()
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=bare_environment(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "runserver exited on 127.0.0.1"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            assert time.monotonic() < deadline, "runserver never listened on 127.0.0.1"
            time.sleep(0.1)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


# Documentation addresses: nothing here can bind them, so no server starts even
# if the guard were gone.
@pytest.mark.parametrize("address", ["192.0.2.1:8000", "[2001:db8::1]:8000"])
def test_runserver_refuses_non_loopback_addresses_while_a_default_is_left(settings, address):
    settings.DEVELOPMENT_DEFAULTS = ["SECRET_KEY"]
    with pytest.raises(CommandError, match=r"Refusing to serve on .*DJANGO_SECRET_KEY"):
        call_command("runserver", address, use_reloader=False)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "0", "192.168.1.20"])
def test_the_guard_refuses_every_address_beyond_loopback(settings, address):
    settings.DEVELOPMENT_DEFAULTS = ["DEBUG", "SECRET_KEY"]
    with pytest.raises(CommandError, match="DJANGO_DEBUG and DJANGO_SECRET_KEY"):
        check_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_pass_the_guard_with_every_default_left(settings, address):
    settings.DEVELOPMENT_DEFAULTS = ["DEBUG", "SECRET_KEY"]
    check_address(address)


def test_any_address_passes_the_guard_once_the_environment_chose_the_settings(settings):
    settings.DEVELOPMENT_DEFAULTS = []
    for address in ("0.0.0.0", "::", "192.168.1.20"):
        check_address(address)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environment", "left"),
    [
        ({}, ["DEBUG", "SECRET_KEY"]),
        ({"DJANGO_DEBUG": "true"}, ["SECRET_KEY"]),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "chosen-on-purpose"}, []),
    ],
    ids=["nothing-set", "debug-set", "both-set"],
)
def test_the_local_settings_name_the_defaults_the_environment_left(tmp_path, environment, left):
    report = (
        "import django; django.setup(); "
        "from django.conf import settings; print(','.join(settings.DEVELOPMENT_DEFAULTS))"
    )
    done = subprocess.run(
        [sys.executable, "-c", report],
        cwd=ROOT,
        env=bare_environment(
            tmp_path, DJANGO_SETTINGS_MODULE="config.settings.local", **environment
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ",".join(left)
