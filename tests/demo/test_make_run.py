"""`make run` stops cleanly: SIGTERM to make, or Ctrl-C (SIGINT to its
process group), stops the web server and the projector loop it started, and
frees the port. The embedded default only (SQLite, no broker)."""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from tests.projections.processes import ROOT, free_port

pytestmark = pytest.mark.skipif(
    "DATABASE_URL" in os.environ, reason="the embedded default: the SQLite run"
)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def processes_of(var_dir: Path) -> list[int]:
    """The processes whose environment names this run's own var directory."""
    found = []
    marker = f"STOREFRONT_VAR_DIR={var_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


@pytest.mark.parametrize("how", ["SIGTERM to make", "Ctrl-C", "Ctrl-C, started with it ignored"])
def test_make_run_stops_the_server_and_the_projector_loop(tmp_path, how):
    """The last case failed before run_local took SIGINT back: with it
    ignored from the start, neither run_local nor the web server heard it."""
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "READ_DATABASE_URL", "CELERY_BROKER_URL")
    }
    env["STOREFRONT_VAR_DIR"] = str(tmp_path)
    log = tmp_path / "make-run.log"
    with log.open("wb") as output:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}", "RUN_ARGS=--no-demo"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # What SIGINT does in make's process, whatever this one inherited
            # (a background job of a non-interactive shell starts with it
            # ignored, and its children inherit that).
            preexec_fn=partial(
                signal.signal,
                signal.SIGINT,
                signal.SIG_IGN if how.endswith("ignored") else signal.SIG_DFL,
            ),
        )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 120
        while not answers(url):
            assert make.poll() is None, "make run exited before it served"
            assert time.monotonic() < deadline, "make run did not serve within 120 s"
            time.sleep(0.3)
        assert len(processes_of(tmp_path)) >= 3  # make, run_local, runserver, run_projectors

        if how.startswith("Ctrl-C"):
            os.killpg(make.pid, signal.SIGINT)
        else:
            make.send_signal(signal.SIGTERM)
        try:
            make.wait(60)
        except subprocess.TimeoutExpired:
            alive = {pid: command_line(pid) for pid in processes_of(tmp_path)}
            raise AssertionError(f"still running: {alive}\n{log.read_text()[-3000:]}") from None
        assert "did not stop within" not in log.read_text(), log.read_text()[-3000:]

        deadline = time.monotonic() + 30
        while processes_of(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_of(tmp_path) == []
        assert not answers(url)
    finally:
        for pid in processes_of(tmp_path):
            os.kill(pid, signal.SIGKILL)
