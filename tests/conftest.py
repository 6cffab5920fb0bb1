import environ
import pytest
from django.db import connections

from eventstore.recording import announce_event_writer


def on_postgres() -> bool:
    return connections["default"].vendor == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)")
    skip_broker = pytest.mark.skip(reason="needs Redis (CELERY_BROKER_URL)")
    skip_pool = pytest.mark.skip(reason="only in the DATABASE_POOL=true pass")
    # Read as the settings read it: the pass is the environment's, not the settings'.
    pooled = environ.Env().bool("DATABASE_POOL", default=False)
    for item in items:
        if "postgres" in item.keywords and not on_postgres():
            item.add_marker(skip_pg)
        if "broker" in item.keywords and not settings.CELERY_BROKER_URL:
            item.add_marker(skip_broker)
        if "pool" in item.keywords and not pooled:
            item.add_marker(skip_pool)


@pytest.fixture(autouse=True)
def _test_transaction_records_events(request):
    """A test that runs inside one transaction (``django_db`` without
    ``transaction=True``) sends its commands inside it, after fixtures that
    may have written already: like any transaction that records events, it is
    announced as an event writer before its first write."""
    marker = request.node.get_closest_marker("django_db")
    if (
        marker is None
        or marker.kwargs.get("transaction")
        or "transactional_db" in request.fixturenames
    ):
        return
    if (
        "default" not in (marker.kwargs.get("databases") or ["default"])
        and marker.kwargs.get("databases") != "__all__"
    ):
        return
    request.getfixturevalue("db")
    announce_event_writer()


@pytest.fixture(autouse=True)
def _no_checkpoint_watch_outlives_its_test():
    """The process's checkpoint watch keeps what it read: a test's database is
    emptied after it, so the next test starts a watch of its own."""
    yield
    from queries import consistency

    consistency.watch.stop()


@pytest.fixture(autouse=True)
def _no_partition_count_from_another_test():
    """A process trusts a partition count it read for a second
    (``layout.recent_partition_count``); each test's database starts anew."""
    from projections.engine import layout

    layout.forget_recent()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-123")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="pw-staff-123", is_staff=True, is_superuser=True
    )


@pytest.fixture(autouse=True)
def _no_answers_kept_from_another_test():
    """Answers are kept by row version, which names a row's content within
    one database; each test's database starts anew."""
    from queries import apis, views

    for kept in (apis.answers, views.pages, views.fragments):
        kept.clear()
    return
