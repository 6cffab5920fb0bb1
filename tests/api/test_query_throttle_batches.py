"""The query limit counts locally first (queries/throttling.py): a reader well
under the limit never waits on Redis; processes report their hits in batches,
so together they let a client through at most a batch per process beyond the
limit; a client over the limit is refused from memory."""

import secrets

import pytest
from django.core.cache import caches

from kernel.cache import FailOpenRedisCache
from queries.throttling import BATCH_DIVISOR, LocalFirstCounter

LIMIT, SECONDS = 100, 3600
BATCH = LIMIT // BATCH_DIVISOR


def a_client() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


class CountingRedis:
    """The real shared counter, with its round trips counted."""

    def __init__(self, shared: FailOpenRedisCache) -> None:
        self.shared = shared
        self.round_trips = 0

    def add_hits(self, key: str, hits: int, window_seconds: int) -> int | None:
        self.round_trips += 1
        return self.shared.add_hits(key, hits, window_seconds)


@pytest.fixture
def redis(settings, monkeypatch):
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("needs Redis (the PostgreSQL + Redis run)")
    settings.CACHES = {
        "default": {"BACKEND": "kernel.cache.FailOpenRedisCache", "LOCATION": url},
    }
    shared = caches["default"]
    assert isinstance(shared, FailOpenRedisCache)
    counting = CountingRedis(shared)
    monkeypatch.setattr("queries.throttling.shared_counter", lambda: counting)
    return counting


def hits(counter: LocalFirstCounter, client: str, count: int, window: int = 1) -> list[bool]:
    return [counter.hit(client, limit=LIMIT, seconds=SECONDS, window=window) for _ in range(count)]


def test_a_reader_under_a_batch_never_waits_on_redis(redis):
    answers = hits(LocalFirstCounter(), a_client(), BATCH - 1)

    assert all(answers)
    assert redis.round_trips == 0


def test_one_process_is_exact_and_reports_once_a_batch(redis):
    answers = hits(LocalFirstCounter(), a_client(), LIMIT + 10)

    assert answers == [True] * LIMIT + [False] * 10
    assert redis.round_trips == LIMIT // BATCH


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_together_overshoot_by_at_most_a_batch_each(redis, processes):
    counters = [LocalFirstCounter() for _ in range(processes)]
    client = a_client()
    allowed = 0
    for _ in range(LIMIT):  # round robin, as a load balancer spreads one client
        for counter in counters:
            allowed += counter.hit(client, limit=LIMIT, seconds=SECONDS, window=1)

    assert LIMIT <= allowed <= LIMIT + processes * (BATCH - 1)


def test_a_client_over_the_limit_is_refused_from_memory(redis):
    counter, client = LocalFirstCounter(), a_client()
    hits(counter, client, LIMIT + 1)
    trips = redis.round_trips

    assert not any(hits(counter, client, 50))
    assert redis.round_trips == trips


def test_a_new_window_starts_from_zero(redis):
    counter, client = LocalFirstCounter(), a_client()
    hits(counter, client, LIMIT + 1, window=1)

    assert all(hits(counter, client, LIMIT, window=2))


def test_other_processes_hits_are_learnt_at_the_next_report(redis):
    client = a_client()
    hits(LocalFirstCounter(), client, LIMIT)  # another process used the whole limit
    late = LocalFirstCounter()

    answers = hits(late, client, BATCH)

    assert answers == [True] * (BATCH - 1) + [False]


def test_without_redis_each_process_counts_alone(monkeypatch):
    monkeypatch.setattr("queries.throttling.shared_counter", lambda: None)
    answers = hits(LocalFirstCounter(), a_client(), LIMIT + 3)

    assert answers == [True] * LIMIT + [False] * 3


def test_while_redis_is_down_the_limit_fails_open(monkeypatch):
    down = FailOpenRedisCache(
        "redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.05}}
    )
    monkeypatch.setattr("queries.throttling.shared_counter", lambda: down)

    assert all(hits(LocalFirstCounter(), a_client(), LIMIT + 20))


def test_a_late_hit_of_the_last_window_does_not_reset_this_one(redis):
    counter, client = LocalFirstCounter(), a_client()
    hits(counter, client, LIMIT, window=2)
    counter.hit(
        client, limit=LIMIT, seconds=SECONDS, window=1
    )  # a thread that read the clock early

    assert hits(counter, client, 1, window=2) == [False]


def test_past_its_cap_of_clients_a_process_counts_in_redis_alone(redis, monkeypatch):
    monkeypatch.setattr("queries.throttling.MAX_LOCAL_CLIENTS", 3)
    counter = LocalFirstCounter()
    for _ in range(3):
        hits(counter, a_client(), 1)
    crowd = a_client()

    answers = hits(counter, crowd, LIMIT + 1)

    assert len(counter._counts) == 3
    assert answers == [True] * LIMIT + [False]
    assert redis.round_trips == LIMIT + 1


def test_a_new_rate_starts_its_own_windows(redis):
    counter, client = LocalFirstCounter(), a_client()
    counter.hit(client, limit=3, seconds=86400, window=20_000)  # days, under another rate

    answers = [counter.hit(client, limit=2, seconds=1, window=1_700_000_000) for _ in range(3)]

    assert answers == [True, True, False]
