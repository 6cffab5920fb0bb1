"""16 writers whose transactions sleep a random while before they commit, so
commits land out of position order, and one transaction held open for
seconds: the projectors wait for it instead of passing it, and end exact."""

import random
import threading
import time
from decimal import Decimal

import pytest
from django.db import connections, transaction

from catalog import services as catalog
from catalog.models import Product
from eventstore import eventlog
from eventstore.recording import capture_positions
from projections.models import Checkpoint
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import make_users, random_command, seed_catalog
from tests.projections.processes import (
    kill,
    process_env,
    start_run_projectors,
    wait_for_log,
    wait_until_caught_up,
)

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]

WRITERS = 16
RUN_SECONDS = 8.0
LONG_TRANSACTION_SECONDS = 5.0


class Commits:
    """The positions each transaction wrote, in the order the transactions committed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_commit_order: list[list[int]] = []

    def committed(self, positions: list[eventlog.LogPosition]) -> None:
        if positions:
            with self.lock:
                self.in_commit_order.append([p.position for p in positions])

    def out_of_order(self) -> int:
        """Transactions that committed after one holding a higher position."""
        highest, late = 0, 0
        for positions in self.in_commit_order:
            late += min(positions) < highest
            highest = max(highest, *positions)
        return late


def slow_writer(seed: int, users: list, stop: threading.Event, commits: Commits, errors: list):
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            with capture_positions() as positions, transaction.atomic():
                random_command(rng, users)
                time.sleep(rng.uniform(0, 0.08))  # hold the transaction open a while
            commits.committed(positions)
    except BaseException as error:
        errors.append(error)
    finally:
        connections.close_all()


def long_transaction(product_id: int, opened: threading.Event, done: dict, errors: list):
    try:
        with capture_positions() as positions, transaction.atomic():
            catalog.product_change_price(product_id=product_id, price=Decimal("4242.42"))
            done["position"] = positions[-1]
            opened.set()
            time.sleep(LONG_TRANSACTION_SECONDS)
    except BaseException as error:
        errors.append(error)
        opened.set()
    finally:
        connections.close_all()


def test_sixteen_writers_and_a_long_transaction_commit_out_of_order_and_project_exactly(
    tmp_path,
):
    rng = random.Random(81)
    users = make_users(count=12)
    seed_catalog(rng, sellers=4, products=40)
    env = process_env("")  # no broker: run_projectors wakes on NOTIFY
    log = tmp_path / "run_projectors.log"
    loop = start_run_projectors(env, log, "--threads", "2")
    stop, commits = threading.Event(), Commits()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=slow_writer, args=(n, users, stop, commits, errors), daemon=True)
        for n in range(WRITERS)
    ]
    try:
        wait_for_log(log, "Projecting")
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        opened = threading.Event()
        done: dict[str, eventlog.LogPosition] = {}
        product_id = Product.objects.order_by("?").values_list("pk", flat=True).first()
        holder = threading.Thread(
            target=long_transaction, args=(product_id, opened, done, errors), daemon=True
        )
        holder.start()
        assert opened.wait(10)
        long_txid = done["position"].transaction_id
        passed_it = False
        while holder.is_alive():
            # No checkpoint may move past a transaction that has not committed.
            highest = max(Checkpoint.objects.values_list("transaction_id", flat=True))
            passed_it |= highest > long_txid
            time.sleep(0.05)
        assert not passed_it, "a projector went past a transaction that was still open"
        time.sleep(RUN_SECONDS - LONG_TRANSACTION_SECONDS - 1.5)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        wait_until_caught_up(60)
        assert loop.poll() is None
    finally:
        stop.set()
        kill(loop)
    late = commits.out_of_order()
    assert late > 10, f"only {late} commits landed out of position order"
    assert_no_drift()
    tally.count("transactions committed out of position order", late)
    tally.count("transactions committed by 16 concurrent writers", len(commits.in_commit_order))
