"""resize_partitions run again and again, splits and merges, while three
writers send mixed commands, two run_projectors processes divide the
partitions between them, and a reader checks that each of its own writes is
visible as soon as its token is applied: the read side ends exact, with
every store in the last layout."""

import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest
from django.db import connections

from catalog import services as catalog
from catalog.models import Product
from eventstore.eventlog import LogPosition
from eventstore.models import Event
from eventstore.recording import capture_positions
from eventstore.tokens import Token
from projections.models import ProductReadModel
from projections.resize import resize
from queries import consistency
from tests.chaos import tally
from tests.chaos.verify import assert_no_drift
from tests.projections.history import Writer, assert_layout, make_users, seed_catalog
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

# From 2 partitions: splits, merges that must align partitions standing apart, and back.
SIZES = [4, 8, 4, 2, 8, 1, 4]


class OwnWrites(threading.Thread):
    """Like a client with ``X-Consistency-Token``: sets another product's
    related list to show the product and waits for that command's token,
    then changes the product's price, waits for that token (it names the
    product: only its owner must pass it), and reads the product's row and
    the listing row, most often in another partition: both must show the new
    price, or one the writers set after it."""

    def __init__(self, product_id: int, lister_id: int) -> None:
        super().__init__(daemon=True)
        self.product_id = product_id
        self.lister_id = lister_id
        self.stop = threading.Event()
        self.checked = 0
        self.shown_checked = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            cents = 100
            while not self.stop.is_set():
                cents += 1
                self._command(
                    lambda: catalog.product_set_recommendations(
                        product_id=self.lister_id, related_ids=[self.product_id]
                    )
                )
                price = Decimal(cents) / 100
                token = self._command(
                    partial(catalog.product_change_price, product_id=self.product_id, price=price)
                )
                if token is None:
                    continue  # a writer had set that price already: no event
                self._check(token, price)
                time.sleep(0.02)
        except BaseException as error:  # surfaced by the test
            self.errors.append(error)
        finally:
            connections.close_all()

    @staticmethod
    def _command(command: Callable[[], object]) -> Token | None:
        """Run it and wait for its token, as the API answers and a client reads."""
        with capture_positions() as positions:
            command()
        if not positions:
            return None
        token = positions.token()
        applied = consistency.wait_for(token.position, timeout=10, keys=token.keys)
        assert applied, f"token {token} not applied"
        return token

    def _check(self, token: Token, price: Decimal) -> None:
        # The rows first, then the changes: one a writer makes in between is
        # in the list, whether the rows show it yet or not.
        shown = ProductReadModel.objects.get(pk=self.product_id).price
        listing = ProductReadModel.objects.get(pk=self.lister_id).related_products
        changes = Event.objects.filter(stream_id=self.product_id, event_type="PriceChanged")
        since = [
            Decimal(event.payload["price"])
            for event in changes
            if LogPosition(event.transaction_id, event.position) >= token.position
        ]
        assert shown in since, f"read {shown} after writing {price}"
        self.checked += 1
        for entry in listing:  # a writer may have set another list meanwhile
            if entry["id"] == self.product_id:
                assert Decimal(entry["price"]) in since, f"listed at {entry} after {price}"
                self.shown_checked += 1


def test_splits_and_merges_while_commands_flow_leave_the_read_side_exact(tmp_path, settings):
    settings.PROJECTION_PARTITIONS = 2
    rng = random.Random(71)
    users = make_users(count=12)
    seed_catalog(rng, sellers=4, products=40)
    env = process_env("", PROJECTION_PARTITIONS="2")  # no broker: they wake on NOTIFY
    logs = [tmp_path / f"run_projectors-{n}.log" for n in range(2)]
    loops = [start_run_projectors(env, log, "--threads", "2") for log in logs]
    writers = [Writer(seed=n, users=users, pause=0.01) for n in range(3)]
    first, second = Product.objects.order_by("pk").values_list("pk", flat=True)[:2]
    reader = OwnWrites(first, lister_id=second)  # partitions apart at 2, 4 and 8
    steps = []
    try:
        for log in logs:
            wait_for_log(log, "Projecting")
        for thread in [*writers, reader]:
            thread.start()
        for size in SIZES:
            time.sleep(0.5)
            steps += resize("products", size)
        time.sleep(0.5)
        reader.stop.set()
        reader.join(30)
        for writer in writers:
            writer.finish()
        wait_until_caught_up(60)
        assert all(loop.poll() is None for loop in loops)
    finally:
        reader.stop.set()
        for writer in writers:
            writer.stop.set()
        for loop in loops:
            kill(loop)
    assert not reader.errors, reader.errors
    commands = sum(writer.commands for writer in writers)
    assert commands > 100, f"only {commands} commands ran"
    # About 30 on this machine, fewer beside a CPU hog: a floor, not a rate.
    assert reader.checked >= 5, f"only {reader.checked} own writes read back"
    assert reader.shown_checked >= 1, "no listing row was read back"
    assert_no_drift()
    assert_layout(SIZES[-1])
    slowest = max(step.seconds for step in steps)
    tally.count("splits and merges while commands flowed", len(steps))
    tally.count("own writes read back across them", reader.checked)
    tally.count("own writes read back on another product's list", reader.shown_checked)
    tally.count("slowest resize step, ms", round(slowest * 1000))
