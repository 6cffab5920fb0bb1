import threading
import time

import pytest
from django.core import signing
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from eventstore.eventlog import LogPosition
from eventstore.tokens import TOKEN_SALT, issue_token
from projections.engine import checkpoint_payload, notify_checkpoints_changed
from projections.models import Checkpoint
from queries import consistency
from tests.api.factories import ProductRowFactory, set_checkpoints
from tests.api.schema import assert_documented
from tests.conftest import on_postgres

both_databases = pytest.mark.django_db(databases=["default", "read"])
threaded = pytest.mark.django_db(databases=["default", "read"], transaction=True)
DETAIL = "/api/products/{product_id}/"


def later(seconds, action):
    """Run ``action`` on another thread (with its own connections) after ``seconds``."""

    def run():
        time.sleep(seconds)
        try:
            action()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def advance_checkpoints(transaction_id, position, *, notify=True):
    """What the engine does: move every partition and NOTIFY each new
    checkpoint in the same transaction."""
    with transaction.atomic(using="read"):
        set_checkpoints("products", transaction_id, position)
        if notify and connections["read"].vendor == "postgresql":
            with connections["read"].cursor() as cursor:
                for checkpoint in Checkpoint.objects.filter(projector="products"):
                    cursor.execute(
                        "SELECT pg_notify('storefront_checkpoints', %s)",
                        [checkpoint_payload(checkpoint)],
                    )


def move_partitions(partitions, transaction_id, position):
    """Move these partitions' checkpoints, and NOTIFY them, as batches do."""
    with transaction.atomic(using="read"), connections["read"].cursor() as cursor:
        rows = Checkpoint.objects.filter(projector="products", partition__in=partitions)
        rows.update(transaction_id=transaction_id, position=position)
        for checkpoint in rows:
            cursor.execute(
                "SELECT pg_notify('storefront_checkpoints', %s)", [checkpoint_payload(checkpoint)]
            )


def token(transaction_id, position):
    """A token as a command answers it."""
    return issue_token(LogPosition(transaction_id, position))


@both_databases
def test_nothing_to_wait_for_at_the_start_of_the_log():
    assert consistency.is_applied(LogPosition(0, 0))


@both_databases
def test_applied_only_when_every_partition_has_passed_the_token(settings):
    settings.PROJECTION_PARTITIONS = 3
    token = LogPosition(9, 500)
    assert not consistency.is_applied(token)  # no checkpoint rows: all at (0, 0)

    set_checkpoints("products", 9, 500, partitions=2)
    assert not consistency.is_applied(token)  # the third partition is missing

    Checkpoint.objects.create(projector="products", partition=2, transaction_id=9, position=499)
    assert not consistency.is_applied(token)

    # A later transaction passes the token whatever its position.
    Checkpoint.objects.filter(partition=2).update(transaction_id=10, position=1)
    assert consistency.is_applied(token)
    assert not consistency.is_applied(LogPosition(10, 2))
    assert not consistency.is_applied(token, consistency.SELLERS)

    Checkpoint.objects.create(projector="sellers", partition=0, transaction_id=9, position=500)
    assert consistency.is_applied(token, consistency.SELLERS)


@both_databases
def test_rows_of_dropped_partitions_do_not_count(settings):
    settings.PROJECTION_PARTITIONS = 2
    set_checkpoints("products", 0, 10, partitions=4)
    Checkpoint.objects.filter(partition=1).update(position=5)
    assert not consistency.is_applied(LogPosition(0, 10))


@both_databases
def test_the_count_is_the_rows_own_not_the_settings(settings):
    """After a resize (``projections.resize``) the rows say how many
    partitions there are, whatever ``PROJECTION_PARTITIONS`` says."""
    settings.PROJECTION_PARTITIONS = 2
    for partition in range(4):
        Checkpoint.objects.create(
            projector="products",
            partition=partition,
            partitions=4,
            position=5 if partition == 3 else 10,
        )
    assert not consistency.is_applied(LogPosition(0, 10))  # partition 3 is behind
    Checkpoint.objects.filter(partition=3).delete()
    assert not consistency.is_applied(LogPosition(0, 10))  # and now missing
    Checkpoint.objects.update(partitions=3)
    assert consistency.is_applied(LogPosition(0, 10))


@both_databases
def test_gives_up_after_the_timeout():
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(0, 10), timeout=0.3) is False
    assert 0.3 <= time.monotonic() - started < 0.8


@both_databases
def test_a_zero_timeout_checks_once():
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(0, 10), timeout=0) is False
    assert time.monotonic() - started < 0.1


@threaded
def test_wakes_up_when_the_projector_catches_up():
    helper = later(0.2, lambda: advance_checkpoints(3, 10))
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(3, 10), timeout=5) is True
    elapsed = time.monotonic() - started
    helper.join()
    assert 0.2 <= elapsed < 0.6


@threaded
def test_already_applied_costs_one_query(django_assert_num_queries):
    advance_checkpoints(3, 10)
    with django_assert_num_queries(1, connection=connections["read"]):
        assert consistency.wait_for(LogPosition(3, 9), timeout=5) is True


@pytest.mark.postgres
@threaded
def test_on_postgres_it_sleeps_on_notifications_instead_of_polling():
    # The checkpoint moves without a NOTIFY: a poller would see it; the watch
    # knows only what it read when it started and what it was told since.
    helper = later(0.1, lambda: advance_checkpoints(3, 10, notify=False))
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(3, 10), timeout=0.8) is False
    assert time.monotonic() - started >= 0.75
    helper.join()


@pytest.mark.postgres
@threaded
def test_on_postgres_notifications_of_positions_before_the_token_do_not_end_the_wait():
    def notify_without_progress():
        for _ in range(5):
            advance_checkpoints(1, 1)
            time.sleep(0.02)

    later(0.05, notify_without_progress)
    assert consistency.wait_for(LogPosition(3, 10), timeout=0.5) is False


@pytest.mark.postgres
@threaded
def test_on_postgres_the_watch_reads_every_checkpoint_again_when_told_and_goes_on(settings):
    """A resize, a repair or a swap moves checkpoints other than by a batch
    and says so with an empty payload: the watch reads them all again (here
    the count a split made) and goes on listening. It once read them from
    inside its notification loop, which holds the connection's lock: the
    watch hung there, and every later wait timed out."""
    settings.PROJECTION_PARTITIONS = 2
    advance_checkpoints(1, 1)

    def split_and_move():
        with transaction.atomic(using="read"):
            Checkpoint.objects.filter(projector="products").update(partitions=3)
            Checkpoint.objects.create(
                projector="products", partition=2, partitions=3, transaction_id=1, position=1
            )
            notify_checkpoints_changed()
        time.sleep(0.1)
        move_partitions([0, 1], 3, 10)

    helper = later(0.1, split_and_move)
    assert consistency.wait_for(LogPosition(3, 10), timeout=1) is False  # 2 is behind
    helper.join()

    later(0.1, lambda: move_partitions([2], 3, 10))
    assert consistency.wait_for(LogPosition(3, 10), timeout=3) is True
    assert consistency.watch._counts["products"] == 3


@pytest.mark.postgres
@threaded
def test_on_postgres_a_projector_the_watch_has_not_seen_waits_for_all_its_partitions(settings):
    """The watch starts before any checkpoint row exists (the projectors
    have not made them yet); then partition 0 of 2 passes the token. The
    count comes with each batch's NOTIFY: it once took one partition for a
    projector it had not seen, and the token passed on partition 0 alone
    (the resize chaos test's reader saw an older price so, once in CI)."""
    settings.PROJECTION_PARTITIONS = 2

    def make_and_move_the_first():
        set_checkpoints("products", 0, 0)
        move_partitions([0], 3, 10)

    helper = later(0.1, make_and_move_the_first)
    assert consistency.wait_for(LogPosition(3, 10), timeout=0.6) is False
    helper.join()


@pytest.mark.postgres
@threaded
def test_on_postgres_waiters_of_a_process_share_one_listening_connection(settings):
    settings.CONSISTENCY_MAX_WAITERS = 8
    results: list[bool] = []

    def wait() -> None:
        try:
            results.append(consistency.wait_for(LogPosition(3, 10), timeout=5))
        finally:
            connections.close_all()

    waiters = [threading.Thread(target=wait) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    deadline = time.monotonic() + 5
    while consistency.waiters.count < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    with connections["read"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            [f"%{consistency.WATCH_APPLICATION_NAME}"],
        )
        listeners = cursor.fetchone()[0]
    advance_checkpoints(3, 10)
    for waiter in waiters:
        waiter.join(5)
    assert consistency.waiters.count == 0
    assert listeners == 1
    assert results == [True] * 4


@threaded
def test_waiting_is_bounded_per_process_and_the_rest_answer_at_once(settings):
    settings.CONSISTENCY_MAX_WAITERS = 1
    first: list[bool] = []

    def wait() -> None:
        try:
            first.append(consistency.wait_for(LogPosition(3, 10), timeout=5))
        finally:
            connections.close_all()

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 5
    while consistency.waiters.count < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    second = consistency.wait_for(LogPosition(3, 10), timeout=5)
    refused_in = time.monotonic() - started
    advance_checkpoints(3, 10)
    waiter.join(5)
    assert second is False
    assert refused_in < 0.5
    assert first == [True]


@both_databases
def test_a_token_no_longer_fresh_is_checked_once_and_never_waited_for():
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(0, 10), timeout=5, fresh=False) is False
    assert time.monotonic() - started < 0.5
    set_checkpoints("products", 0, 10)
    assert consistency.wait_for(LogPosition(0, 10), timeout=5, fresh=False) is True


@threaded
def test_on_sqlite_it_polls_with_back_off():
    if on_postgres():
        pytest.skip("SQLite polls; PostgreSQL listens")
    with CaptureQueriesContext(connections["read"]) as queries:
        assert consistency.wait_for(LogPosition(0, 10), timeout=0.6) is False
    # 5, 10, 20, 40, 80 then 100 ms pauses: about ten checks in 0.6 s, not thousands.
    assert 5 <= len(queries) <= 12


@both_databases
@pytest.mark.parametrize("how", ["header", "query"])
def test_a_query_behind_the_token_answers_in_time_and_says_stale(api, settings, how):
    settings.CONSISTENCY_WAIT_SECONDS = 0.3
    ProductRowFactory(product_id=42)
    url = DETAIL.format(product_id=42)
    started = time.monotonic()
    if how == "header":
        response = api.get(url, HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    else:
        response = api.get(url, {"consistency_token": token(0, 77)})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response["X-Read-Model-Stale"] == "true"
    assert response.json()["id"] == 42
    assert 0.3 <= elapsed < 1.0
    assert_documented(response, DETAIL, "GET")


@both_databases
def test_the_default_wait_is_two_seconds(api):
    ProductRowFactory(product_id=42)
    started = time.monotonic()
    response = api.get(DETAIL.format(product_id=42), HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    assert 2.0 <= time.monotonic() - started < 2.8
    assert response["X-Read-Model-Stale"] == "true"


@both_databases
def test_a_query_whose_token_is_applied_is_not_stale(api):
    ProductRowFactory(product_id=42)
    set_checkpoints("products", 5, 77)
    response = api.get(DETAIL.format(product_id=42), HTTP_X_CONSISTENCY_TOKEN=token(5, 77))
    assert response.status_code == 200
    assert "X-Read-Model-Stale" not in response


@both_databases
def test_a_stale_404_says_stale_too(api, settings):
    settings.CONSISTENCY_WAIT_SECONDS = 0.1
    response = api.get(DETAIL.format(product_id=42), HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    assert response.status_code == 404
    assert response["X-Read-Model-Stale"] == "true"
    assert_documented(response, DETAIL, "GET")


@both_databases
def test_the_seller_endpoint_waits_for_the_seller_projector(api, settings):
    settings.CONSISTENCY_WAIT_SECONDS = 0.1
    set_checkpoints("products", 0, 77)
    response = api.get("/api/sellers/1/", HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    assert response["X-Read-Model-Stale"] == "true"
    set_checkpoints("sellers", 0, 77)
    response = api.get("/api/sellers/1/", HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    assert "X-Read-Model-Stale" not in response


@both_databases
@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "1-",
        "-1",
        "1",
        "1-2-3",
        "1.5-2",
        "0x1-2",
        "99999999999999999999-1",
        "1-99999999999999999999",
        "1-" + "9" * 60,
        "²-1",
        "0-77",
        "0-77.1abc.",
        "0-77.1abc.sig.more",
        "0-77." + "x" * 200,
    ],
)
@pytest.mark.parametrize("url", ["/api/products/", "/api/products/42/", "/api/sellers/1/"])
def test_a_malformed_token_is_a_400(api, token, url):
    ProductRowFactory(product_id=42)
    started = time.monotonic()
    response = api.get(url, {"consistency_token": token})
    assert time.monotonic() - started < 0.5
    assert response.status_code == 400
    assert "consistency_token" in response.json()
    template = {"/api/products/42/": DETAIL, "/api/sellers/1/": "/api/sellers/{seller_id}/"}
    assert_documented(response, template.get(url, url), "GET")


def _forged(position: str) -> str:
    """A token of the right shape whose signature this server did not make."""
    signer = signing.TimestampSigner(key="not-the-servers-key", salt=TOKEN_SALT, sep=".")
    return signer.sign(position)


@both_databases
@pytest.mark.parametrize(
    "forge",
    [
        lambda: _forged("0-999999"),
        lambda: token(0, 1).rsplit(".", 1)[0] + "." + "A" * 43,
        lambda: "0-999999." + token(0, 1).split(".", 1)[1],
    ],
    ids=["another-key", "bad-signature", "moved-position"],
)
@pytest.mark.parametrize("url", ["/api/products/", "/api/products/42/", "/api/sellers/1/"])
def test_a_token_this_server_did_not_issue_is_a_400_and_never_waits(api, settings, forge, url):
    settings.CONSISTENCY_WAIT_SECONDS = 5
    ProductRowFactory(product_id=42)
    started = time.monotonic()
    response = api.get(url, HTTP_X_CONSISTENCY_TOKEN=forge())
    assert time.monotonic() - started < 0.5
    assert response.status_code == 400
    assert response.json() == {"consistency_token": ["Not a consistency token this server issued."]}
    template = {"/api/products/42/": DETAIL, "/api/sellers/1/": "/api/sellers/{seller_id}/"}
    assert_documented(response, template.get(url, url), "GET")


@both_databases
def test_a_token_issued_too_long_ago_is_not_waited_for(api, settings):
    settings.CONSISTENCY_WAIT_SECONDS = 5
    settings.CONSISTENCY_TOKEN_MAX_AGE_SECONDS = -1  # every token is too old
    ProductRowFactory(product_id=42)
    started = time.monotonic()
    response = api.get(DETAIL.format(product_id=42), HTTP_X_CONSISTENCY_TOKEN=token(0, 77))
    assert time.monotonic() - started < 0.5
    assert response.status_code == 200
    assert response["X-Read-Model-Stale"] == "true"


@both_databases
def test_a_token_with_keys_waits_only_for_the_partitions_that_own_them(settings):
    """A command's token names the products its events were about; their
    owners write every row that shows them, so the owners passing the token
    is enough. Before, every partition had to pass it."""
    settings.PROJECTION_PARTITIONS = 4
    set_checkpoints("products", 3, 9)
    Checkpoint.objects.filter(projector="products", partition__in=[1, 2]).update(
        transaction_id=3, position=10
    )
    at = LogPosition(3, 10)
    assert consistency.is_applied(at, keys=frozenset({5}))  # 5 % 4 == 1
    assert consistency.is_applied(at, keys=frozenset({5, 6}))  # 1 and 2
    assert not consistency.is_applied(at, keys=frozenset({5, 7}))  # 3 is behind
    assert not consistency.is_applied(at)  # no keys: every partition
    assert consistency.wait_for(at, timeout=0, keys=frozenset({9})) is True
    assert consistency.wait_for(at, timeout=0) is False


@pytest.mark.postgres
@threaded
def test_on_postgres_the_watch_ends_a_wait_when_the_owner_alone_has_passed(settings):
    settings.PROJECTION_PARTITIONS = 2
    advance_checkpoints(1, 1)
    helper = later(0.1, lambda: move_partitions([1], 3, 10))
    started = time.monotonic()
    assert consistency.wait_for(LogPosition(3, 10), timeout=3, keys=frozenset({7})) is True
    assert time.monotonic() - started < 2
    helper.join()
    assert consistency.wait_for(LogPosition(3, 10), timeout=0.3) is False  # 0 is behind


@both_databases
def test_a_commands_token_names_its_products_or_none():
    """What ``run_command`` answers: the products its events named, none
    when an event named none (a seller's), or when they named too many."""
    from catalog import services as catalog
    from eventstore.tokens import read_token
    from kernel.http import run_command
    from tests.factories import product as make_product

    _seller, seller_token = run_command(
        lambda: catalog.seller_register(name="S", reputation="4.00")
    )
    assert read_token(seller_token)[0].keys is None
    product = make_product(price="9.99", stock=1)
    _, stock_token = run_command(
        lambda: catalog.product_change_stock(product_id=product.pk, quantity=3)
    )
    assert read_token(stock_token)[0].keys == frozenset({product.pk})
    more = [make_product(price="9.99", stock=1) for _ in range(5)]

    def restock(products, quantity):
        for each in products:
            catalog.product_change_stock(product_id=each.pk, quantity=quantity)

    _, four = run_command(lambda: restock(more[:4], 7))
    assert read_token(four)[0].keys == frozenset(each.pk for each in more[:4])
    _, five = run_command(lambda: restock(more, 8))
    assert read_token(five)[0].keys is None


def test_a_negative_key_is_not_named_so_the_token_still_reads_back():
    """A key is written as digits; a negative one (no product has one) would
    make a token its own server refuses."""
    from eventstore.recording import Captured
    from eventstore.tokens import read_token

    captured = Captured()
    captured.note(LogPosition(3, 10), {"product_id": -5})
    assert captured.token().keys is None
    assert read_token(issue_token(captured.token().position, captured.token().keys))[0].keys is None
    assert read_token(issue_token(LogPosition(3, 10), {4, -5}))[0].keys is None


def test_a_token_of_an_older_release_names_no_keys_and_keys_are_signed():
    from eventstore.tokens import InvalidToken, read_token

    signer = signing.TimestampSigner(salt=TOKEN_SALT, sep=".")
    assert read_token(signer.sign("3-10"))[0].keys is None
    issued = issue_token(LogPosition(3, 10), {5})
    assert read_token(issued)[0].keys == frozenset({5})
    value, rest = issued.split(".", 1)
    with pytest.raises(InvalidToken):
        read_token(value.replace("-5", "-6") + "." + rest)
    with pytest.raises(InvalidToken):
        read_token(signer.sign("3-10-1-2-3-4-5"))  # more keys than a token names
