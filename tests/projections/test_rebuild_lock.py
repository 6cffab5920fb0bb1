"""One rebuild at a time, with real processes: a second rebuild_projections
while one runs is refused and names it; a killed one does not block the next."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from projections.models import RebuildRun
from projections.rebuild import lock_holder, rebuild_lock, shadow_exists
from tests.projections.history import assert_exact
from tests.projections.processes import ROOT, database_url, kill
from tests.projections.test_rebuild import history

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

# One event a batch: a replay of a few hundred events takes seconds, long
# enough to catch the rebuild while it holds the lock.
COMMAND = [sys.executable, "manage.py", "rebuild_projections", "--from-events", "--batch-size", "1"]


def environment() -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url("default"),
        "READ_DATABASE_URL": database_url("read"),
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
    }
    if "STOREFRONT_VAR_DIR" in os.environ:
        env["STOREFRONT_VAR_DIR"] = os.environ["STOREFRONT_VAR_DIR"]
    return env


def start_rebuild(log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        COMMAND, cwd=ROOT, env=environment(), stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def replaying_under_lock(process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``process`` holds the rebuild lock and is replaying the log."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the rebuild ended early: {log.read_text()}"
        holder = lock_holder() or ""
        replaying = RebuildRun.objects.filter(
            finished_at__isnull=True, phase=RebuildRun.Phase.REPLAY
        ).exists()
        if f"pid {process.pid} on " in holder and replaying:
            return
        time.sleep(0.01)
    raise AssertionError(f"the rebuild never got to replaying: {log.read_text()}")


def test_a_second_rebuild_while_one_runs_is_refused_and_the_first_completes(tmp_path):
    history(seed=71, commands=300)
    log = tmp_path / "first.log"
    first = start_rebuild(log)
    try:
        replaying_under_lock(first, log)
        # Frozen with its lock held, so it is surely still running.
        first.send_signal(signal.SIGSTOP)
        try:
            second = subprocess.run(
                COMMAND, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=120
            )
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(300) == 0, log.read_text()
    finally:
        kill(first)

    assert second.returncode != 0
    run = RebuildRun.objects.get()  # the second one started none of its own
    assert "Another rebuild_projections is running: " in second.stderr
    assert f"rebuild #{run.pk} (from-events, replaying the event log)" in second.stderr
    assert f"by pid {first.pid} on " in second.stderr
    assert ", since " in second.stderr
    assert run.phase == RebuildRun.Phase.SWAPPED
    assert not shadow_exists()
    assert_exact()


def test_a_killed_rebuild_does_not_block_the_next_one(tmp_path):
    history(seed=72, commands=150)
    log = tmp_path / "killed.log"
    first = start_rebuild(log)
    try:
        replaying_under_lock(first, log)
    finally:
        kill(first)  # SIGKILL

    second = subprocess.run(
        COMMAND, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300
    )

    assert second.returncode == 0, second.stdout + second.stderr
    assert RebuildRun.objects.latest("pk").phase == RebuildRun.Phase.SWAPPED
    assert lock_holder() is None
    assert_exact()


def test_the_refusal_names_the_holder_and_touches_nothing():
    with rebuild_lock():
        with pytest.raises(CommandError) as refused:
            call_command("rebuild_projections", stdout=io.StringIO(), stderr=io.StringIO())
        assert f"pid {os.getpid()} on " in (lock_holder() or "")
    assert str(refused.value).startswith("Another rebuild_projections is running: pid ")
    assert "a rebuild that dies or is killed releases its lock" in str(refused.value)
    assert not RebuildRun.objects.exists()
    assert not shadow_exists()
    assert lock_holder() is None
