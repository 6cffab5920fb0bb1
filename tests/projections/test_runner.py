"""The run_projectors loop outlives what the databases throw at it for a while,
and only that."""

import threading

import psycopg
import pytest
from django.db import InternalError

from projections import runner
from projections.registry import PROJECTIONS

pytestmark = pytest.mark.django_db(databases=["default", "read"], transaction=True)


class Refusals:
    """``catch_up`` that raises ``error`` for its first ``times`` calls, then
    says it applied nothing, and stops the loop after a few calls more."""

    def __init__(self, error: BaseException, times: int, loop: runner.ProjectorLoop) -> None:
        self.error, self.times, self.loop = error, times, loop
        self.calls = 0

    def __call__(self, *args, **kwargs) -> int:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        if self.calls >= self.times + 3:
            self.loop.stopping.set()
        return 0


def run(loop: runner.ProjectorLoop) -> list[BaseException]:
    failures: list[BaseException] = []

    def target() -> None:
        try:
            loop.run_forever()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return failures


@pytest.mark.parametrize(
    "error",
    [
        # What Django raises when PostgreSQL ends a transaction left idle too
        # long (idle_in_transaction_session_timeout, SQLSTATE 25P03).
        InternalError("terminating connection due to idle-in-transaction timeout"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
    ],
    ids=["idle-timeout", "lock-timeout", "deadlock"],
)
def test_a_refusal_of_the_database_backs_off_and_projects_on(monkeypatch, settings, error):
    if isinstance(error, InternalError):
        error.__cause__ = psycopg.errors.IdleInTransactionSessionTimeout()
    loop = runner.ProjectorLoop([PROJECTIONS["sellers"]], threads=1)
    monkeypatch.setattr(runner, "FIRST_OUTAGE_WAIT_SECONDS", 0.01)
    refusals = Refusals(error, times=2, loop=loop)
    monkeypatch.setattr(runner, "catch_up", refusals)

    assert run(loop) == []
    assert refusals.calls >= 5


def test_any_other_error_is_a_bug_and_ends_the_loop(monkeypatch):
    loop = runner.ProjectorLoop([PROJECTIONS["sellers"]], threads=1)
    monkeypatch.setattr(runner, "catch_up", Refusals(KeyError("seller_id"), times=1, loop=loop))

    failures = run(loop)

    assert [type(failure) for failure in failures] == [KeyError]
