"""rebuild_projections, verify_projections and event upcasting."""

import io
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connections

from catalog import services as catalog
from eventstore.models import Event
from projections import expected as truth
from projections.models import (
    Checkpoint,
    ProductFacts,
    ProductReadModel,
    RebuildRun,
    RelatedLink,
    ReviewReadModel,
    SellerFacts,
)
from projections.projectors.products import WHOLE_PARTITION
from projections.rebuild import (
    backfill_from_snapshot,
    create_shadow,
    drop_shadow,
    rebuild,
    shadow_alias,
    shadow_exists,
)
from projections.registry import PROJECTIONS, project_all
from tests.projections.history import (
    add_version_one_review,
    assert_exact,
    make_users,
    random_command,
    seed_catalog,
    snapshot,
)
from tests.projections.processes import ROOT, database_url

both_databases = pytest.mark.django_db(transaction=True, databases=["default", "read"])
FACT_FIELDS = ["seller_id", "name", "price", "is_active", "rating_sum", "review_count"]
REVIEW_FIELDS = ["review_id", "product_id", "created_at"]


def quiet(*args: object) -> None:
    return None


def history(seed: int, commands: int = 150) -> None:
    rng = random.Random(seed)
    users = make_users()
    seed_catalog(rng)
    for _ in range(commands):
        random_command(rng, users)


@both_databases
@pytest.mark.parametrize("from_events", [False, True], ids=["snapshot", "from-events"])
def test_a_rebuild_equals_the_incremental_projection(from_events):
    history(seed=61)
    project_all()
    incremental = snapshot()
    run = rebuild(from_events=from_events, batch_size=37, progress=quiet, log=quiet)
    assert run.phase == RebuildRun.Phase.SWAPPED
    assert snapshot() == incremental
    assert_exact()
    assert not shadow_exists()
    # The swapped-in checkpoints carry on with new events.
    product_id = next(iter(incremental[0]))
    catalog.product_change_stock(product_id=product_id, quantity=77)
    project_all()
    assert ProductReadModel.objects.get(pk=product_id).stock_quantity == 77
    assert_exact()


@pytest.mark.postgres
@both_databases
def test_the_snapshot_backfill_equals_the_truth_field_by_field():
    from django.contrib.auth import get_user_model

    from reviews import services as reviews
    from reviews.models import Review

    history(seed=66, commands=200)
    product_id = (
        Event.objects.filter(event_type="ProductCreated").earliest("position").payload["product_id"]
    )
    awkward = get_user_model().objects.create_user(username="zoë.o'brien")
    reviews.review_add(
        product_id=product_id,
        author=awkward,
        rating=4,
        title='Tab\there, "quoted", back\\slash',
        body="Line one\nline two \\N, \r\u00e9\u4e2d\U0001f600 {json: [1]}",
    )
    expected = truth.expected_products(), truth.expected_sellers()
    create_shadow()
    try:
        backfill_from_snapshot(quiet)
        with shadow_alias():
            assert truth.drift(expected[0], truth.actual_products(), truth.PRODUCT_FIELDS) == {}
            assert truth.drift(expected[1], truth.actual_sellers(), truth.SELLER_FIELDS) == {}
            assert truth.actual_products()[product_id]["recent_reviews"][0]["author"] == (
                "zoë.o'brien"
            )
            product_facts = set(
                ProductFacts.objects.values_list(
                    "projector", "partition", "product_id", *FACT_FIELDS
                )
            )
            seller_facts = set(
                SellerFacts.objects.values_list(
                    "projector", "partition", "seller_id", "name", "reputation"
                )
            )
            links = set(RelatedLink.objects.values_list("source_id", "target_id", "partition"))
            stored_reviews = set(ReviewReadModel.objects.values_list(*REVIEW_FIELDS))
            checkpoints = Checkpoint.objects.count()
    finally:
        drop_shadow()
    partitions = PROJECTIONS["products"].partition_count()
    scopes = [("products", n) for n in range(partitions)] + [("sellers", 0)]
    # Each product partition keeps its own products' facts; the sellers' every one's.
    assert product_facts == {
        (name, n, pk, *(row[field] for field in FACT_FIELDS))
        for name, n in scopes
        for pk, row in expected[0].items()
        if name == "sellers" or pk % partitions == n
    }
    assert seller_facts == {
        ("products", n, pk, row["name"], row["reputation"])
        for n in range(partitions)
        for pk, row in expected[1].items()
    }
    assert links == {
        (pk, entry["id"], pk % partitions)
        for pk, row in expected[0].items()
        for entry in row["related_products"]
    }
    visible = Review.objects.filter(is_hidden=False)
    assert stored_reviews == set(visible.values_list("pk", "product_id", "created_at"))
    assert checkpoints == sum(p.partition_count() for p in PROJECTIONS.values())


@both_databases
def test_readers_and_writers_carry_on_during_a_rebuild():
    history(seed=62, commands=80)
    project_all()
    product_ids = list(ProductReadModel.objects.values_list("pk", flat=True))
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def reader() -> None:
        rng = random.Random(1)
        try:
            while not stop.is_set():
                pk = rng.choice(product_ids)
                row = ProductReadModel.objects.filter(pk=pk).first()
                if row is None:
                    problems.append(f"product {pk} missing")
                elif row.seller_name == "" or len(row.rating_histogram) != 5:
                    problems.append(f"product {pk} half built")
                reads[0] += 1
        except Exception as error:
            problems.append(repr(error))
        finally:
            connections.close_all()

    def writer() -> None:
        rng = random.Random(2)
        users = make_users_for_writer()
        try:
            while not stop.is_set():
                random_command(rng, users)
                time.sleep(0.002)
        except Exception as error:
            problems.append(f"writer: {error!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        rebuild(from_events=False, batch_size=25, progress=quiet, log=quiet)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert problems == []
    assert reads[0] > 10
    project_all()
    assert_exact()


def make_users_for_writer() -> list:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    users = [model.objects.create_user(username=f"writer{n}") for n in range(6)]
    users.append(model.objects.create_user(username="writer-staff", is_staff=True))
    return users


def _replay_under_way() -> bool:
    """The killed run's shadow has applied some events, one per batch."""
    run = RebuildRun.objects.order_by("-pk").first()
    if run is None or run.phase != RebuildRun.Phase.REPLAY or not shadow_exists():
        return False
    with shadow_alias():
        whole = Checkpoint.objects.filter(projector="products", partition=WHOLE_PARTITION)
        return whole.filter(events_applied__gt=20).exists()


@pytest.mark.postgres
@both_databases
def test_a_rebuild_killed_half_way_finishes_on_the_next_run(tmp_path):
    history(seed=63, commands=200)
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url("default"),
        "READ_DATABASE_URL": database_url("read"),
        "PATH": "/usr/bin:/bin",
    }
    command = [
        sys.executable,
        "manage.py",
        "rebuild_projections",
        "--from-events",
        "--batch-size",
        "1",
    ]
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _replay_under_way():
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert RebuildRun.objects.get().finished_at is None, "killed before it finished"

    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Resuming rebuild" in second.stdout
    assert RebuildRun.objects.get().phase == RebuildRun.Phase.SWAPPED
    assert not shadow_exists()
    assert_exact()


def manage(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a process of its own, on the test databases."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url("default"),
        "READ_DATABASE_URL": database_url("read"),
        "PATH": "/usr/bin:/bin",
        **extra,
    }
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.postgres
@both_databases
@pytest.mark.parametrize("mode", [[], ["--from-events"]], ids=["snapshot", "from-events"])
def test_a_rebuild_with_the_connection_pool_on_builds_beside_the_live_tables(mode):
    """DATABASE_POOL=true: Django keys its pools by alias, so a shadow connection
    taken from the pool would be a live one; the rebuild must never get one."""
    history(seed=67, commands=120)
    project_all()
    before = snapshot()
    done = manage("rebuild_projections", *mode, "--batch-size", "25", DATABASE_POOL="true")
    assert done.returncode == 0, done.stdout + done.stderr
    assert RebuildRun.objects.get().phase == RebuildRun.Phase.SWAPPED
    assert not shadow_exists()
    assert snapshot() == before
    assert_exact()
    verified = manage("verify_projections", DATABASE_POOL="true")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "No drift." in verified.stdout


@pytest.mark.pool
@pytest.mark.postgres
@both_databases
def test_the_pool_pass_borrows_its_connections_from_the_pool():
    """``scripts/test.sh pool`` runs this file and the engine's again with
    DATABASE_POOL=true: it is a pass of its own only if the connections of
    the tests (and of the rebuild's threads) really come from psycopg's pool."""
    for alias in ("default", "read"):
        connections[alias].ensure_connection()
        pool = getattr(connections[alias], "pool", None)
        assert pool is not None, alias
        assert pool.get_stats()["requests_num"] >= 1, alias


@pytest.mark.django_db(databases=["default", "read"], transaction=True)
def test_verify_finds_a_corrupted_row_names_the_field_and_fix_repairs_it():
    history(seed=64, commands=60)
    project_all()
    victim = ProductReadModel.objects.earliest("pk")
    ProductReadModel.objects.filter(pk=victim.pk).update(
        review_count=victim.review_count + 3, seller_reputation="0.01"
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_projections", stdout=out, stderr=io.StringIO())
    assert exit_info.value.code == 1
    report = out.getvalue()
    assert "1 drifted" in report
    assert f"product {victim.pk} review_count" in report
    assert f"product {victim.pk} seller_reputation" in report

    fixed = io.StringIO()
    call_command("verify_projections", "--fix", stdout=fixed)
    assert "product rows: 1 rewritten" in fixed.getvalue()
    clean = io.StringIO()
    call_command("verify_projections", stdout=clean)
    assert "No drift." in clean.getvalue()
    assert_exact()


@both_databases
def test_an_old_version_event_is_projected_as_the_current_version():
    from django.contrib.auth import get_user_model

    seed_catalog(random.Random(65), products=2)
    product_id = (
        Event.objects.filter(event_type="ProductCreated").earliest("position").payload["product_id"]
    )
    author = get_user_model().objects.create_user(username="old-timer")
    add_version_one_review(product_id, author, 4, "Written in version one.")
    project_all()
    row = ProductReadModel.objects.get(pk=product_id)
    assert row.recent_reviews[0]["title"] == ""
    assert row.recent_reviews[0]["body"] == "Written in version one."
    assert row.review_count == 1
    assert_exact()
