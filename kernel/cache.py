"""A Redis cache that fails open, and a counter of hits per time window.

The cache holds nothing that is the truth: only the throttle counts. When
Redis is down a read is a miss and a write is dropped, after a short socket
timeout, so commands and queries keep working (unthrottled for the while)
instead of answering 500. Each outage is logged, at most every few seconds.
"""

import logging
import time
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import Redis, RedisError

logger = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 10.0


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client, which builds a new ``redis.Redis`` for
    every call (most of a throttle check's time, in a profile); this one keeps
    one per connection pool. A ``redis.Redis`` is safe to share between
    threads: each command borrows a connection from the pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Redis] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Redis:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            new: Redis = self._client(connection_pool=pool)  # type: ignore[attr-defined]
            client = self._clients.setdefault(id(pool), new)
        return client


class FailOpenRedisCache(RedisCache):
    _last_warning = 0.0

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient

    def _unavailable(self, error: RedisError) -> None:
        now = time.monotonic()
        if now - FailOpenRedisCache._last_warning >= WARN_EVERY_SECONDS:
            FailOpenRedisCache._last_warning = now
            logger.warning("The Redis cache is unavailable (%r); reading misses.", error)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except RedisError as error:
            self._unavailable(error)
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        try:
            return super().get_many(keys, version)
        except RedisError as error:
            self._unavailable(error)
            return {}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except RedisError as error:
            self._unavailable(error)
            return False

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        try:
            super().set(key, value, timeout, version)
        except RedisError as error:
            self._unavailable(error)

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except RedisError as error:
            self._unavailable(error)
            return False

    def set_many(
        self, data: dict[Any, Any], timeout: Any = None, version: int | None = None
    ) -> list[Any]:
        try:
            return super().set_many(data, timeout, version)
        except RedisError as error:
            self._unavailable(error)
            return list(data)

    def touch(self, key: Any, timeout: Any = None, version: int | None = None) -> bool:
        try:
            return super().touch(key, timeout, version)
        except RedisError as error:
            self._unavailable(error)
            return False

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().delete(key, version)
        except RedisError as error:
            self._unavailable(error)
            return False

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        try:
            super().delete_many(keys, version)
        except RedisError as error:
            self._unavailable(error)

    def add_hits(self, key: str, hits: int, window_seconds: int) -> int | None:
        """Add ``hits`` to ``key``'s count, which expires with its window: one
        round trip. The new count, or None while Redis is down (fail open)."""
        full_key = self.make_and_validate_key(key)
        try:
            client = self._cache.get_client(full_key, write=True)
            pipeline = client.pipeline(transaction=False)
            pipeline.incrby(full_key, hits)
            pipeline.expire(full_key, window_seconds, nx=True)
            count, _ = pipeline.execute()
        except RedisError as error:
            self._unavailable(error)
            return None
        return int(count)


def shared_counter() -> FailOpenRedisCache | None:
    """The cache every process counts in together (Redis), if there is one."""
    cache = caches["default"]
    return cache if isinstance(cache, FailOpenRedisCache) else None
