"""The Celery task's hand-over: a wake-up that finds its partition busy is
never stranded; whoever holds the partition reads the log once more."""

import base64
import json
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import close_old_connections, connections

from catalog.models import Product
from catalog.services import product_change_price
from eventstore import eventlog
from projections import tasks
from projections.engine import Outcome, retry_parked, run_batch
from projections.models import Checkpoint, ParkedEvent, ProductReadModel
from projections.projectors.products import ProductProjection, partition_of
from projections.registry import project_all
from tests.projections.history import seed_catalog

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.broker,
    pytest.mark.django_db(transaction=True, databases=["default", "read"]),
]


@pytest.fixture(autouse=True)
def no_claims() -> Iterator[None]:
    tasks._claims.clear()
    yield
    tasks._claims.clear()


def behind(name: str, partition: int) -> int:
    checkpoint = Checkpoint.objects.get(projector=name, partition=partition)
    return eventlog.count_after(
        eventlog.LogPosition(checkpoint.transaction_id, checkpoint.position)
    )


def start_holder(results: dict) -> threading.Thread:
    """``project_partition`` for products partition 0 on a thread of its own."""

    def hold() -> None:
        try:
            results["applied"] = tasks.project_partition("products", 0)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    results["thread"] = thread
    thread.start()
    return thread


def tasks_for(queued, name: str, partition: int) -> int:
    """How many queued task messages name that partition."""
    return sum(
        json.loads(base64.b64decode(json.loads(message)["body"]))[0][:2] == [name, partition]
        for message in queued.lrange("celery", 0, -1)
    )


def a_product() -> Product:
    """A product of products partition 0 (the only one whose events it applies)."""
    seed_catalog(random.Random(5), products=6)
    project_all()
    count = ProductProjection.partition_count()
    return next(p for p in Product.objects.order_by("pk") if partition_of(p.pk, count) == 0)


def test_a_task_that_finds_the_partition_locked_leaves_its_event_to_the_holder(broker, monkeypatch):
    product = a_product()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    inside, go_on = threading.Event(), threading.Event()
    results: dict = {}
    real_flush = ProductProjection.flush

    def held_flush(self: ProductProjection) -> None:
        if threading.current_thread() is results.get("thread") and not inside.is_set():
            inside.set()  # in the first batch's transaction, holding the lock
            go_on.wait(10)
        real_flush(self)

    monkeypatch.setattr(ProductProjection, "flush", held_flush)
    holder = start_holder(results)
    assert inside.wait(10)
    product_change_price(product_id=product.pk, price=Decimal("23.45"))
    # What another worker process's task does on that wake-up: the lock is held.
    assert run_batch(ProductProjection, 0).outcome is Outcome.BUSY
    go_on.set()
    holder.join(10)
    close_old_connections()
    assert results["applied"] == 2
    assert behind("products", 0) == 0


def test_a_task_that_finds_the_partition_claimed_in_this_process_makes_the_holder_look_again(
    broker, monkeypatch
):
    product = a_product()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    letting_go, go_on = threading.Event(), threading.Event()
    results: dict = {}
    real_release = tasks._release

    def slow_to_let_go(*args, **kwargs):
        holding = threading.current_thread() is results.get("thread")
        if holding and not letting_go.is_set():
            letting_go.set()  # its last look found nothing, flag cleared: about to let go
            go_on.wait(10)
        return real_release(*args, **kwargs)

    monkeypatch.setattr(tasks, "_release", slow_to_let_go)
    holder = start_holder(results)
    assert letting_go.wait(10)
    product_change_price(product_id=product.pk, price=Decimal("23.45"))
    assert tasks.project_partition("products", 0) == 0  # handed over
    go_on.set()
    holder.join(10)
    close_old_connections()
    assert results["applied"] == 2
    assert behind("products", 0) == 0


def test_commits_while_a_task_projects_send_no_message_and_are_applied(broker, monkeypatch):
    product = a_product()
    queued = tasks._redis()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))  # flags set, tasks sent
    messages = queued.llen("celery")
    assert messages > 0
    inside, go_on = threading.Event(), threading.Event()
    results: dict = {}
    real_flush = ProductProjection.flush

    def held_flush(self: ProductProjection) -> None:
        if threading.current_thread() is results.get("thread") and not inside.is_set():
            inside.set()
            go_on.wait(10)
        real_flush(self)

    monkeypatch.setattr(ProductProjection, "flush", held_flush)
    holder = start_holder(results)
    assert inside.wait(10)
    for price in ("23.45", "34.56", "45.67"):
        product_change_price(product_id=product.pk, price=Decimal(price))
    assert queued.llen("celery") == messages  # every partition's flag still set
    go_on.set()
    holder.join(10)
    close_old_connections()
    assert results["applied"] == 4
    assert behind("products", 0) == 0
    pending = tasks.PENDING_KEY.format(name="products", partition=0)
    assert not queued.exists(pending)  # the next commit sends a task again
    product_change_price(product_id=product.pk, price=Decimal("56.78"))
    assert queued.llen("celery") == messages + 1


def test_a_wake_up_for_one_commit_reads_the_log_twice(broker, monkeypatch):
    """The read that applies the commit reaches the log's end, so the task
    clears its flag then and reads once more, and stops when that read
    finds nothing: two reads, not a third one to find nothing first (with
    no lingering, which comes before the clearing)."""
    monkeypatch.setattr(tasks, "LINGER_SECONDS", 0)
    product = a_product()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    pending = tasks.PENDING_KEY.format(name="products", partition=0)
    queued = tasks._redis()
    seen: list[tuple[Outcome, bool]] = []
    real_run_batch = tasks.run_batch

    def counted(*args, **kwargs):
        result = real_run_batch(*args, **kwargs)
        seen.append((result.outcome, queued.exists(pending) == 1))
        return result

    monkeypatch.setattr(tasks, "run_batch", counted)
    assert tasks.project_partition("products", 0) == 1
    # The flag is still set while the first read applies; cleared before the second.
    assert seen == [(Outcome.APPLIED, True), (Outcome.IDLE, False)]
    assert behind("products", 0) == 0


def test_commits_while_a_task_lingers_send_no_message_and_are_applied_by_it(broker, monkeypatch):
    """After applying its commit the task keeps the partition and its flag
    (``LINGER_SECONDS``): a commit then sets no flag and sends no message,
    and the task's next read applies it; once it has applied nothing for
    that long, it clears the flag and lets go, and a commit sends a task
    again."""
    monkeypatch.setattr(tasks, "LINGER_SECONDS", 0.3)
    product = a_product()
    queued = tasks._redis()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))  # flags set, tasks sent
    messages = tasks_for(queued, "products", 0)
    lingering, go_on = threading.Event(), threading.Event()
    results: dict = {}
    real_pause = tasks._pause

    def first_pause_waits() -> None:
        if threading.current_thread() is results.get("thread") and not lingering.is_set():
            lingering.set()  # the commit is applied; the flag is still set
            go_on.wait(10)
        real_pause()

    monkeypatch.setattr(tasks, "_pause", first_pause_waits)
    holder = start_holder(results)
    assert lingering.wait(10)
    pending = tasks.PENDING_KEY.format(name="products", partition=0)
    assert queued.exists(pending)
    product_change_price(product_id=product.pk, price=Decimal("23.45"))
    assert tasks_for(queued, "products", 0) == messages  # none: the lingering task reads it
    go_on.set()
    holder.join(10)
    close_old_connections()
    assert results["applied"] == 2
    assert behind("products", 0) == 0
    assert not queued.exists(pending)
    product_change_price(product_id=product.pk, price=Decimal("34.56"))
    assert tasks_for(queued, "products", 0) == messages + 1


def test_a_task_lingers_no_longer_than_its_linger_budget(broker, monkeypatch):
    """Under steady commands a task would linger its whole budget and keep
    its worker slot; it lingers at most MAX_LINGER_SECONDS after it started,
    then clears its flag and lets go."""
    monkeypatch.setattr(tasks, "LINGER_SECONDS", 30.0)
    monkeypatch.setattr(tasks, "MAX_LINGER_SECONDS", 0.2)
    product = a_product()
    queued = tasks._redis()
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    started = time.monotonic()
    assert tasks.project_partition("products", 0) == 1
    assert time.monotonic() - started < tasks.TASK_BUDGET_SECONDS / 2
    assert not queued.exists(tasks.PENDING_KEY.format(name="products", partition=0))


def test_a_task_that_applied_nothing_of_its_own_does_not_linger(broker, monkeypatch):
    """A partition woken only to pass over other partitions' commits (a
    ``pass_over`` task) applies no event, so it lets go at once."""
    product = a_product()
    other = 1  # a_product's product is partition 0's
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    pauses: list[float] = []
    monkeypatch.setattr(tasks, "_pause", lambda: pauses.append(1.0))
    assert tasks.pass_over("products", other) == 0
    assert pauses == []
    assert behind("products", other) == 0


def test_a_pass_over_leaves_the_pending_flag_to_the_task_that_set_it(broker, monkeypatch):
    """Partition 1's pending flag says a task for it is queued or running,
    perhaps lingering in another worker process: a pass-over of partition 1
    must not clear it (the next commit would send a second task, and both
    would hold a worker slot). It passes over in one read: commits of others
    after it cleared its own flag send another pass-over."""
    product = a_product()
    other = 1  # a_product's product is partition 0's
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    pending = tasks.PENDING_KEY.format(name="products", partition=other)
    tasks._redis().set(pending, 1, ex=tasks.PENDING_SECONDS)
    reads = []
    real_run_batch = tasks.run_batch

    def counted(*args, **kwargs):
        reads.append(args[1])
        return real_run_batch(*args, **kwargs)

    monkeypatch.setattr(tasks, "run_batch", counted)
    assert tasks.pass_over("products", other) == 0
    assert tasks._redis().exists(pending)
    assert reads == [other]
    assert behind("products", other) == 0


def test_a_partition_halted_then_retried_is_projected_by_the_next_task(
    broker, monkeypatch, settings
):
    """The worker's claim keeps an instance and a checkpoint from task to task;
    a poison event halts the partition under a task, and once retried the
    next task projects it again."""
    settings.PROJECTION_MAX_ATTEMPTS = 1
    product = a_product()
    partition = product.pk % settings.PROJECTION_PARTITIONS
    product_change_price(product_id=product.pk, price=Decimal("12.34"))
    assert tasks.project_partition("products", partition) == 1  # the claim knows its checkpoint
    real_handler = ProductProjection.price_changed

    def poison(self, event):
        raise ValueError("poison")

    monkeypatch.setattr(ProductProjection, "price_changed", poison)
    product_change_price(product_id=product.pk, price=Decimal("23.45"))
    assert tasks.project_partition("products", partition) == 0
    parked = ParkedEvent.objects.get()
    assert Checkpoint.objects.get(projector="products", partition=partition).halted_at_position
    monkeypatch.setattr(ProductProjection, "price_changed", real_handler)
    retry_parked(parked.pk)
    assert tasks.project_partition("products", partition) == 1
    assert behind("products", partition) == 0
    assert ProductReadModel.objects.get(pk=product.pk).price == Decimal("23.45")


def test_a_commit_wakes_its_products_partition_at_once_and_the_others_to_pass_over_later(
    broker, settings
):
    """Of 4 product partitions, a commit of product 5 wakes partition 1 (and
    the sellers' one, which reads every event) at once; partitions 0, 2 and 3
    get a ``pass_over`` task PASS_OVER_SECONDS later, one each however many
    such commits come. A commit naming no product wakes all at once."""
    settings.PROJECTION_PARTITIONS = 4
    queued = tasks._redis()
    queued.delete("celery")
    assert tasks.wake_partitions(frozenset({5})) == 5
    sent = [json.loads(message) for message in queued.lrange("celery", 0, -1)]
    woken = sorted(
        (
            m["headers"]["task"],
            tuple(json.loads(base64.b64decode(m["body"]))[0]),
            bool(m["headers"]["eta"]),
        )
        for m in sent
    )
    assert woken == [
        ("projections.tasks.pass_over", ("products", 0), True),
        ("projections.tasks.pass_over", ("products", 2), True),
        ("projections.tasks.pass_over", ("products", 3), True),
        ("projections.tasks.project_partition", ("products", 1), False),
        ("projections.tasks.project_partition", ("sellers", 0), False),
    ]
    assert tasks.wake_partitions(frozenset({9})) == 0  # every flag still set
    # Partition 2 at once, and 1 now has only to pass over.
    assert tasks.wake_partitions(frozenset({6})) == 2
    assert tasks.wake_partitions(None) == 2  # 0 and 3 at once
