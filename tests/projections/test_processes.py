"""The tests' own process helpers leave nothing running behind a test."""

import time

import pytest

from eventstore.eventlog import START
from projections.engine import ensure_checkpoints
from projections.registry import PROJECTIONS
from tests.projections.processes import (
    free_port,
    kill,
    passed,
    process_env,
    process_table,
    start_gunicorn,
)


def _children(parent: int) -> list[int]:
    return [pid for pid, _, ppid, _ in process_table() if ppid == parent]


def _running(pids: list[int]) -> list[int]:
    """Those alive and not zombies waiting for a parent to reap them."""
    return [pid for pid, state, _, _ in process_table() if pid in pids and state != "Z"]


def test_killing_gunicorn_takes_its_workers_with_it(tmp_path):
    server = start_gunicorn(process_env(""), free_port(), tmp_path / "gunicorn.log", workers=2)
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # it answers with its first worker; the second follows
    finally:
        kill(server)

    assert len(workers) == 2
    assert _running(workers) == []


@pytest.mark.django_db(databases=["default", "read"])
def test_projectors_that_have_not_made_their_checkpoints_have_passed_nothing(settings):
    """``wait_until_passed`` once returned at once when no checkpoint existed
    yet (every one of none had passed), before the processes under test had
    projected anything."""
    settings.PROJECTION_PARTITIONS = 2
    assert not passed(START)
    ensure_checkpoints(PROJECTIONS["sellers"])
    assert not passed(START)  # the products' are missing
    ensure_checkpoints(PROJECTIONS["products"])
    assert passed(START)
