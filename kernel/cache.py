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
from django.core.cache.backends.redis import RedisCache
from redis import RedisError

logger = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 10.0


class FailOpenRedisCache(RedisCache):
    _last_warning = 0.0

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

    def count_hit(self, key: str, window_seconds: int) -> int | None:
        """Add one to ``key``'s count, which starts at 1 and expires with its
        window: one round trip. None while Redis is down (fail open)."""
        full_key = self.make_and_validate_key(key)
        try:
            client = self._cache.get_client(full_key, write=True)
            pipeline = client.pipeline(transaction=False)
            pipeline.incr(full_key)
            pipeline.expire(full_key, window_seconds, nx=True)
            count, _ = pipeline.execute()
        except RedisError as error:
            self._unavailable(error)
            return None
        return int(count)


def count_hit(key: str, window_seconds: int) -> int | None:
    """This window's hits of ``key`` so far, this one included, counted in the
    default cache: Redis when there is one (every process counts together),
    else each process's own memory. None when the count is unavailable."""
    cache = caches["default"]
    if isinstance(cache, FailOpenRedisCache):
        return cache.count_hit(key, window_seconds)
    cache.add(key, 0, window_seconds)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between the two calls: a new window
        cache.add(key, 1, window_seconds)
        return 1
