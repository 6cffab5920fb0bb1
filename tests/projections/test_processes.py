"""The tests' own process helpers leave nothing running behind a test."""

import os
import time
from pathlib import Path

from tests.projections.processes import free_port, kill, process_env, start_gunicorn


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_gunicorn_takes_its_workers_with_it(tmp_path):
    server = start_gunicorn(process_env(""), free_port(), tmp_path / "gunicorn.log", workers=2)
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # it answers with its first worker; the second follows
    finally:
        kill(server)

    assert len(workers) == 2
    assert [pid for pid in workers if _running(pid)] == []
