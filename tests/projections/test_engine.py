import random
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.db import OperationalError, close_old_connections, connections

from eventstore.listen import connection_params
from eventstore.models import Event
from projections import engine
from projections.engine import Outcome, batches, checkpoints, retry_parked, run_batch, skip_parked
from projections.models import Checkpoint, ParkedEvent, ProductReadModel
from projections.projectors.products import ProductProjection, partition_of
from projections.registry import PROJECTIONS, project_all
from tests.projections.history import (
    add_version_one_review,
    assert_exact,
    make_users,
    random_command,
    seed_catalog,
    snapshot,
    wipe_read_side,
)
from tests.projections.processes import ROOT, process_env

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def project_in_random_batches(rng: random.Random, kept: dict | None = None) -> None:
    """Every partition to the end of the log in batches of random size. With
    ``kept``, most batches go through an instance kept from batch to batch
    (as a runner's), the others through a fresh one (as another worker's).
    A partition that waits for another one is taken up again after the others."""
    waiting = True
    while waiting:
        waiting = False
        for projection in PROJECTIONS.values():
            engine.ensure_checkpoints(projection)
            for partition in range(projection.partition_count()):
                waiting |= _random_batches(rng, kept, projection, partition)


def _random_batches(rng: random.Random, kept: dict | None, projection, partition: int) -> bool:
    """Batches until the partition is idle (False) or waits (True)."""
    while True:
        instance = None
        if kept is not None and rng.random() < 0.7:
            key = (projection.name, partition)
            if key not in kept:
                kept[key] = projection(partition, projection.partition_count())
                if isinstance(kept[key], ProductProjection):
                    kept[key].keep_rows = True  # as a replay's
            instance = kept[key]
        size = rng.randint(1, 40)
        outcome = run_batch(projection, partition, batch_size=size, projection=instance).outcome
        if outcome is not Outcome.APPLIED:
            assert outcome in (Outcome.IDLE, Outcome.WAITING), outcome
            return outcome is Outcome.WAITING


@both_databases
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("keep", [False, True], ids=["fresh", "kept"])
def test_batches_of_any_size_equal_one_by_one_equal_the_truth(seed, keep):
    rng = random.Random(seed)
    users = make_users()
    seed_catalog(rng)
    kept: dict | None = {} if keep else None
    for _ in range(160):
        random_command(rng, users)
        if rng.random() < 0.1:
            project_in_random_batches(rng, kept)  # projection interleaved with commands
    project_in_random_batches(rng, kept)
    assert_exact()
    in_random_batches = snapshot()

    wipe_read_side()
    project_all(batch_size=1)
    assert snapshot() == in_random_batches
    assert_exact()


@both_databases
def test_applying_a_batch_again_changes_nothing(settings):
    rng = random.Random(7)
    users = make_users()
    seed_catalog(rng)
    for _ in range(60):
        random_command(rng, users)
    project_all()
    before = snapshot()
    checkpoint = Checkpoint.objects.get(projector="products", partition=0)
    from eventstore.eventlog import START, read_events

    already_applied = read_events(START, 50)
    result = run_batch(ProductProjection, 0, events=already_applied)
    assert result.outcome is Outcome.BUSY
    assert result.applied == 0
    assert snapshot() == before
    assert Checkpoint.objects.get(pk=checkpoint.pk).position == checkpoint.position


@both_databases
def test_a_crash_between_the_row_writes_and_the_checkpoint_counts_once(monkeypatch):
    rng = random.Random(11)
    users = make_users()
    seed_catalog(rng)
    for _ in range(40):
        random_command(rng, users)

    engine.ensure_checkpoints(ProductProjection)
    real_advance = batches.advance

    def crash_after_writing(checkpoint, through, applied, owner):
        raise SystemExit("worker killed after its row writes, before its checkpoint")

    monkeypatch.setattr(batches, "advance", crash_after_writing)
    with pytest.raises(SystemExit):
        run_batch(ProductProjection, 0)
    assert Checkpoint.objects.get(projector="products", partition=0).position == 0
    assert not ProductReadModel.objects.filter(partition=0).exists()

    monkeypatch.setattr(batches, "advance", real_advance)
    project_all()
    assert_exact()


@both_databases
def test_a_poison_event_parks_halts_its_partition_only_and_can_be_retried(monkeypatch, settings):
    settings.PROJECTION_MAX_ATTEMPTS = 3
    rng = random.Random(5)
    users = make_users()
    seed_catalog(rng)
    for _ in range(30):
        random_command(rng, users)
    from catalog.services import product_change_stock

    victim = Event.objects.filter(event_type="ProductCreated").order_by("position")[3]
    product_change_stock(product_id=victim.payload["product_id"], quantity=3)
    # The poison: the last stock change, applied by its product's partition alone.
    poison = Event.objects.filter(event_type="StockChanged").latest("position")
    halted_partition = poison.payload["product_id"] % settings.PROJECTION_PARTITIONS

    real_handler = ProductProjection.stock_changed

    def failing_handler(self, event):
        if event.position == poison.position:
            raise ValueError("poison")
        real_handler(self, event)

    monkeypatch.setattr(ProductProjection, "stock_changed", failing_handler)
    for _ in range(5):
        project_all()
    parked = ParkedEvent.objects.get()
    assert (parked.partition, parked.position, parked.attempts) == (
        halted_partition,
        poison.position,
        3,
    )
    assert "ValueError: poison" in parked.traceback
    halted = Checkpoint.objects.get(projector="products", partition=halted_partition)
    assert halted.halted_at_position == poison.position
    # Every other partition went on to the end of the log.
    for checkpoint in Checkpoint.objects.exclude(pk=halted.pk):
        assert checkpoint.position == Event.objects.latest("position").position
    # The halted partition stopped right before the poison event.
    assert halted.position < poison.position

    monkeypatch.setattr(ProductProjection, "stock_changed", real_handler)
    retry_parked(parked.pk)
    project_all()
    parked.refresh_from_db()
    assert parked.status == ParkedEvent.Status.RESOLVED
    assert_exact()


@both_databases
def test_skipping_a_parked_event_moves_its_partition_past_it(monkeypatch, settings):
    settings.PROJECTION_MAX_ATTEMPTS = 1
    rng = random.Random(6)
    seed_catalog(rng, products=4)
    from catalog.services import product_change_stock

    product_id = (
        Event.objects.filter(event_type="ProductCreated").earliest("position").payload["product_id"]
    )
    product_change_stock(product_id=product_id, quantity=0)
    product_change_stock(product_id=product_id, quantity=9)

    def always_fails(self, event):
        if self.owns(product_id):
            raise RuntimeError("broken handler")

    monkeypatch.setattr(ProductProjection, "stock_changed", always_fails)
    project_all()
    parked = ParkedEvent.objects.get()
    assert parked.payload["quantity"] == 0
    monkeypatch.undo()
    skip_parked(parked.pk)
    project_all()
    row = ProductReadModel.objects.get(pk=product_id)
    assert row.stock_quantity == 9  # the skipped event stays unapplied; later ones apply
    parked.refresh_from_db()
    assert parked.status == ParkedEvent.Status.SKIPPED


@pytest.mark.postgres
@both_databases
def test_two_workers_never_apply_the_same_partition_at_once(monkeypatch):
    rng = random.Random(9)
    seed_catalog(rng, products=8)
    engine.ensure_checkpoints(ProductProjection)
    inside = threading.Event()
    release = threading.Event()
    real_prepare = ProductProjection.prepare

    def slow_prepare(self, events):
        inside.set()
        release.wait(10)
        real_prepare(self, events)

    monkeypatch.setattr(ProductProjection, "prepare", slow_prepare)
    results = {}

    def first_worker():
        try:
            results["first"] = run_batch(ProductProjection, 0, owner="first")
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_worker)
    thread.start()
    assert inside.wait(10)
    monkeypatch.setattr(ProductProjection, "prepare", real_prepare)
    results["second"] = run_batch(ProductProjection, 0, owner="second")
    release.set()
    thread.join(10)
    close_old_connections()
    assert results["second"].outcome is Outcome.BUSY
    assert results["first"].outcome is Outcome.APPLIED
    assert Checkpoint.objects.get(projector="products", partition=0).owner == "first"


@pytest.mark.postgres
@both_databases
def test_a_transaction_still_open_holds_back_every_event_after_it():
    """The horizon in practice: an event committed after a still-open transaction's
    waits for it, and then both are applied, none skipped."""
    rng = random.Random(3)
    seed_catalog(rng, products=2)
    project_all()
    product_ids = list(ProductReadModel.objects.values_list("pk", flat=True))
    from catalog.services import product_change_stock

    started = threading.Event()
    finish = threading.Event()

    def slow_writer():
        from django.db import transaction

        try:
            with transaction.atomic():
                product_change_stock(product_id=product_ids[0], quantity=1)
                started.set()
                finish.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert started.wait(10)
    product_change_stock(product_id=product_ids[1], quantity=2)
    project_all()
    assert ProductReadModel.objects.get(pk=product_ids[1]).stock_quantity != 2
    finish.set()
    thread.join(10)
    time.sleep(0.05)
    project_all()
    assert ProductReadModel.objects.get(pk=product_ids[0]).stock_quantity == 1
    assert ProductReadModel.objects.get(pk=product_ids[1]).stock_quantity == 2
    assert_exact()


@pytest.mark.django_db(databases=["default", "read"], transaction=True)
def test_a_kept_projection_forgets_its_rows_after_verify_fix():
    """verify --fix touches every checkpoint: a runner's kept rows, which may be
    the very ones it repaired, are loaded again."""
    from catalog import services as catalog
    from projections.repair import repair

    rng = random.Random(11)
    users = make_users()
    seed_catalog(rng)
    for _ in range(30):
        random_command(rng, users)
    project_all()
    products, sellers = PROJECTIONS["products"], PROJECTIONS["sellers"]
    count = products.partition_count()
    product_id = ProductReadModel.objects.values_list("product_id", flat=True)[0]
    catalog.product_change_stock(product_id=product_id, quantity=40)
    kept = {partition: ProductProjection(partition, count) for partition in range(count)}
    for partition, instance in kept.items():
        instance.keep_rows = True
        result = run_batch(products, partition, projection=instance)
        # The stock change is the product's partition's; the others pass it.
        assert (result.outcome, result.applied) == (Outcome.APPLIED, instance.owns(product_id))
    engine.catch_up(sellers, 0)
    owner = kept[product_id % count]
    # The row goes wrong in memory and in the table alike, as a bug would make it.
    owner.rows[product_id].name = "Stale"
    ProductReadModel.objects.filter(pk=product_id).update(name="Stale")
    assert repair().counts["product rows"] == 1

    catalog.product_change_stock(product_id=product_id, quantity=41)
    for partition, instance in kept.items():
        result = run_batch(products, partition, projection=instance)
        assert (result.outcome, result.applied) == (Outcome.APPLIED, instance.owns(product_id))
    engine.catch_up(sellers, 0)
    row = ProductReadModel.objects.get(pk=product_id)
    assert row.stock_quantity == 41
    assert row.name != "Stale"
    assert_exact()


@both_databases
@pytest.mark.parametrize("batch_size", [1, 100])
def test_a_removed_recent_review_is_replaced_as_the_log_says_it_reads_now(batch_size):
    """The review store keeps no text: a review that comes back into the five
    shown is read from its own events, its edits and old versions included."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from reviews import services as reviews

    seed_catalog(random.Random(66), products=2)
    product_id = (
        Event.objects.filter(event_type="ProductCreated").earliest("position").payload["product_id"]
    )
    users = [get_user_model().objects.create_user(username=f"reader{n}") for n in range(7)]
    # The oldest review, written before ReviewAdded had a title.
    oldest = add_version_one_review(
        product_id,
        users[0],
        2,
        "Written in version one.",
        created_at=timezone.now() - timedelta(days=1),
    )
    added = [
        reviews.review_add(product_id=product_id, author=user, rating=3, body=f"First words {n}.")
        for n, user in enumerate(users[1:])
    ]
    project_all(batch_size=batch_size)
    # Out of the five shown, edited twice: only the last edit may show.
    reviews.review_edit(review_id=added[0].pk, author=users[1], rating=5, body="Second thoughts.")
    reviews.review_edit(review_id=added[0].pk, author=users[1], rating=4, body="Third thoughts.")
    project_all(batch_size=batch_size)
    for review, user in zip(added[-2:], users[-2:], strict=True):
        reviews.review_remove(review_id=review.pk, author=user)
    project_all(batch_size=batch_size)

    recent = ProductReadModel.objects.get(pk=product_id).recent_reviews
    assert [entry["id"] for entry in recent] == [
        *(review.pk for review in added[-3::-1]),
        oldest.pk,
    ]
    assert (recent[3]["rating"], recent[3]["body"]) == (4, "Third thoughts.")
    assert recent[3]["edited_at"] is not None
    assert (recent[4]["title"], recent[4]["body"]) == ("", "Written in version one.")
    assert_exact()


# Infrastructure errors: they roll the batch back and count no attempt ------


def _stock_change_to_project(seed: int, quantity: int) -> tuple[int, int]:
    """A projected catalog and one StockChanged event not projected yet:
    returns its product and that product's partition."""
    from catalog.services import product_change_stock

    seed_catalog(random.Random(seed), products=4)
    project_all()
    product_id = ProductReadModel.objects.earliest("pk").pk
    product_change_stock(product_id=product_id, quantity=quantity)
    return product_id, partition_of(product_id, ProductProjection.partition_count())


def _assert_no_attempt_counted(partition: int) -> None:
    checkpoint = Checkpoint.objects.get(projector="products", partition=partition)
    assert checkpoint.failures == 0
    assert checkpoint.next_attempt_at is None
    assert checkpoint.halted_at_position is None
    assert checkpoint.last_error == ""
    assert not ParkedEvent.objects.exists()


def _assert_applied_once(product_id: int, partition: int, quantity: int) -> None:
    before = Checkpoint.objects.get(projector="products", partition=partition).events_applied
    result = run_batch(ProductProjection, partition)
    assert (result.outcome, result.applied) == (Outcome.APPLIED, 1)
    assert ProductReadModel.objects.get(pk=product_id).stock_quantity == quantity
    checkpoint = Checkpoint.objects.get(projector="products", partition=partition)
    assert checkpoint.events_applied == before + 1
    project_all()
    assert_exact()


def _sqlstates(error: BaseException) -> set[str]:
    states = set()
    link: BaseException | None = error
    while link is not None:
        states.add(getattr(link, "sqlstate", None) or "")
        link = link.__cause__ or link.__context__
    return states


@pytest.mark.postgres
@both_databases
@pytest.mark.parametrize(
    ("timeout", "sqlstate"), [("lock_timeout", "55P03"), ("statement_timeout", "57014")]
)
def test_a_lock_or_statement_timeout_never_parks_a_good_event(settings, timeout, sqlstate):
    """Another connection holds the row the batch must write; the batch's
    connection gives up waiting after 50 ms, attempt after attempt."""
    settings.PROJECTION_MAX_ATTEMPTS = 2
    product_id, partition = _stock_change_to_project(seed=21, quantity=41)
    holder = psycopg.connect(**connection_params("read"))
    try:
        holder.execute(
            "SELECT 1 FROM projections_productreadmodel WHERE product_id = %s FOR UPDATE",
            [product_id],
        )
        with connections["read"].cursor() as cursor:
            cursor.execute(f"SET {timeout} = '50ms'")
        try:
            for _ in range(settings.PROJECTION_MAX_ATTEMPTS + 2):
                with pytest.raises((OperationalError, psycopg.OperationalError)) as raised:
                    run_batch(ProductProjection, partition)
                assert sqlstate in _sqlstates(raised.value)
        finally:
            with connections["read"].cursor() as cursor:
                cursor.execute(f"RESET {timeout}")
        _assert_no_attempt_counted(partition)
        assert ProductReadModel.objects.get(pk=product_id).stock_quantity != 41
    finally:
        holder.rollback()
        holder.close()
    _assert_applied_once(product_id, partition, 41)


@pytest.mark.postgres
@both_databases
def test_a_real_deadlock_never_parks_a_good_event(monkeypatch, settings):
    """The batch holds its partition's lock and waits for a row that a rival
    connection holds, while the rival waits for the partition's lock: a real
    deadlock. PostgreSQL fails the batch (its deadlock_timeout is the shorter)."""
    settings.PROJECTION_MAX_ATTEMPTS = 1  # one counted failure would park it
    product_id, partition = _stock_change_to_project(seed=22, quantity=42)
    rival = psycopg.connect(**connection_params("read"))
    monitor = psycopg.connect(**connection_params("read"), autocommit=True)
    rival.execute("SET deadlock_timeout = '1min'")
    rival.execute(
        "SELECT 1 FROM projections_productreadmodel WHERE product_id = %s FOR UPDATE",
        [product_id],
    )

    def rival_takes_the_partition_then_lets_go():
        partition_lock = [checkpoints.lock_key("products"), partition]
        rival.execute("SELECT pg_advisory_xact_lock(%s, %s)", partition_lock)
        rival.rollback()

    rival_waits = threading.Thread(target=rival_takes_the_partition_then_lets_go)
    real_prepare = ProductProjection.prepare

    def prepare_inside_the_cycle(self, events):
        rival_waits.start()  # for the partition lock this batch holds
        deadline = time.monotonic() + 10
        while not monitor.execute(
            "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [rival.info.backend_pid]
        ).fetchone():
            assert time.monotonic() < deadline, "the rival never waited for the partition"
            time.sleep(0.01)
        with connections["read"].cursor() as cursor:
            cursor.execute("SET LOCAL deadlock_timeout = '10ms'")
        real_prepare(self, events)  # then flush waits for the rival's row

    monkeypatch.setattr(ProductProjection, "prepare", prepare_inside_the_cycle)
    try:
        with pytest.raises((OperationalError, psycopg.OperationalError)) as raised:
            run_batch(ProductProjection, partition)
        assert "40P01" in _sqlstates(raised.value)
    finally:
        if rival_waits.ident is not None:
            rival_waits.join(10)  # once the batch rolled back, the rival had its turn
        rival.close()
        monitor.close()
    monkeypatch.setattr(ProductProjection, "prepare", real_prepare)
    _assert_no_attempt_counted(partition)
    _assert_applied_once(product_id, partition, 42)


@both_databases
def test_celerys_soft_time_limit_inside_a_batch_counts_no_attempt(monkeypatch, settings):
    """Celery raises SoftTimeLimitExceeded asynchronously in whatever code runs
    when the limit passes: here a handler raises it, as it would arrive there."""
    from celery.exceptions import SoftTimeLimitExceeded

    settings.PROJECTION_MAX_ATTEMPTS = 1
    product_id, partition = _stock_change_to_project(seed=23, quantity=43)

    def interrupted(self, event):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(ProductProjection, "stock_changed", interrupted)
    for _ in range(3):
        with pytest.raises(SoftTimeLimitExceeded):
            run_batch(ProductProjection, partition)
    monkeypatch.undo()
    _assert_no_attempt_counted(partition)
    _assert_applied_once(product_id, partition, 43)


@both_databases
def test_a_statement_the_database_refuses_every_time_still_parks(monkeypatch, settings):
    """An integrity or data error from flush is the projector's (the same rows
    fail the same way every time): it counts, and parks."""
    settings.PROJECTION_MAX_ATTEMPTS = 1
    product_id, partition = _stock_change_to_project(seed=24, quantity=44)
    real_handler = ProductProjection.stock_changed

    def negative_stock(self, event):
        real_handler(self, event)
        if self.owns(product_id):
            self.rows[product_id].stock_quantity = -1  # the column's CHECK refuses it

    monkeypatch.setattr(ProductProjection, "stock_changed", negative_stock)
    assert run_batch(ProductProjection, partition).outcome is Outcome.FAILED
    parked = ParkedEvent.objects.get()
    assert parked.payload["quantity"] == 44
    assert "IntegrityError" in parked.error or "CheckViolation" in parked.error


@pytest.mark.postgres
@both_databases
def test_a_batch_skips_the_fsync_wait_and_leaves_no_session_state(monkeypatch):
    """synchronous_commit is off inside every batch and for that transaction
    only: the connection (with DATABASE_POOL, its next borrower) commits as the
    server says after it."""
    with psycopg.connect(**connection_params("read")) as fresh:
        (server_default,) = fresh.execute("SHOW synchronous_commit").fetchall()[0]
    seen: list[str] = []
    real_flush = ProductProjection.flush

    def flush_and_look(self):
        with connections["read"].cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        real_flush(self)

    monkeypatch.setattr(ProductProjection, "flush", flush_and_look)
    seed_catalog(random.Random(25), products=4)
    project_all()
    assert seen
    assert set(seen) == {"off"}
    with connections["read"].cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == server_default


@pytest.mark.postgres
@both_databases
@pytest.mark.parametrize("pool_size", ["16", "2"], ids=["default-pool", "pool-of-two"])
def test_run_projectors_with_the_pool_on_projects_every_partition(pool_size):
    """DATABASE_POOL=true and a thread per partition (five, with the sellers'):
    every thread needs a connection of each alias while it projects. With a
    pool smaller than that they take turns; none waits for ever."""
    seed_catalog(random.Random(26), products=12)
    env = process_env("", DATABASE_POOL="true", DATABASE_POOL_MAX_SIZE=pool_size)
    done = subprocess.run(
        [sys.executable, "manage.py", "run_projectors", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = Event.objects.latest("position").position
    assert set(Checkpoint.objects.values_list("position", flat=True)) == {last}
    assert Checkpoint.objects.count() == sum(p.partition_count() for p in PROJECTIONS.values())
    assert_exact()
