"""The run_projectors loop outlives what the databases throw at it for a while,
and only that."""

import threading
import time

import psycopg
import pytest
from django.db import InternalError, connections

from catalog import services as catalog
from eventstore.eventlog import MAX_TOKEN_KEYS
from eventstore.listen import listening_connection
from eventstore.recording import EVENTS_CHANNEL, command_transaction
from projections import runner
from projections.registry import PROJECTIONS
from tests import factories

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


def notify(payload: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [EVENTS_CHANNEL, payload])


@pytest.mark.postgres
def test_a_commits_notification_names_its_product_or_nothing():
    listener = listening_connection("default", EVENTS_CHANNEL)
    try:
        seller = factories.seller()
        product = factories.product(seller_obj=seller)
        catalog.product_change_stock(product_id=product.pk, quantity=3)
        payloads = [notify.payload for notify in listener.notifies(timeout=0.5)]
    finally:
        listener.close()
    # The seller's registration names none; the product's creation and its
    # stock change name it (one NOTIFY for both: PostgreSQL folds repeats).
    assert payloads[0] == ""
    assert set(payloads[1:]) == {str(product.pk)}


@pytest.mark.postgres
def test_a_process_wakes_at_once_only_for_commits_its_partitions_own(monkeypatch, settings):
    """Of 4 partitions it holds partition 1: a commit of product 2 is another
    process's, and its partition passes over it only ``PASS_OVER_SECONDS``
    later; product 5's (5 % 4 == 1) and one naming no product wake it at once."""
    settings.PROJECTION_PARTITIONS = 4
    monkeypatch.setattr(runner, "PASS_OVER_SECONDS", 2.0)
    products = PROJECTIONS["products"]
    loop = runner.ProjectorLoop([products], threads=1)
    loop._mine = [(products, 1)]
    loop._listen()
    try:
        waited = {}
        for payload in ("2", "5", "", "6", "²"):
            notify(payload)
            started = time.monotonic()
            loop._wait_for_notification(10)
            waited[payload] = time.monotonic() - started
    finally:
        loop._unlisten()
    assert waited["2"] >= 1.9
    assert waited["²"] < 1.0  # not a key (nor an error that ends the loop): every partition's
    assert waited["6"] >= 1.9
    assert waited["5"] < 1.0
    assert waited[""] < 1.0


@pytest.mark.postgres
def test_a_transaction_of_many_products_notifies_a_few_of_them_then_none():
    """PostgreSQL folds only equal NOTIFYs of a transaction: past the few
    keys a token names, the rest say none, so a transaction touching many
    products (an erasure, say) sends a handful, not one per product."""
    products = [factories.product() for _ in range(7)]
    listener = listening_connection("default", EVENTS_CHANNEL)
    try:
        with command_transaction():
            for each in products:
                catalog.product_change_stock(product_id=each.pk, quantity=77)
        payloads = [notify.payload for notify in listener.notifies(timeout=0.5)]
    finally:
        listener.close()
    assert payloads == [str(each.pk) for each in products[:MAX_TOKEN_KEYS]] + [""]
