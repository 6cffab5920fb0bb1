"""Fixtures for the tests that run real Celery workers against a private Redis.

Imported by the conftest of every test package that needs them
(``tests/projections``, ``tests/chaos``).
"""

from collections.abc import Iterator

import pytest
from kombu import pools as kombu_pools

from projections import tasks
from tests.projections.processes import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server: RedisServer, settings) -> Iterator[RedisServer]:
    """Point this process's nudges at the private Redis."""
    from config.celery_app import app

    def reset_connections() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None
        kombu_pools.reset()
        tasks._redis.cache_clear()

    keys = ("broker_url", "broker_read_url", "broker_write_url")
    original = {key: app.conf[key] for key in keys}
    settings.CELERY_BROKER_URL = redis_server.url
    app.conf.update(dict.fromkeys(keys, redis_server.url))
    reset_connections()
    yield redis_server
    app.conf.update(original)
    reset_connections()
