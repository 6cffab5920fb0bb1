import pytest
from django.core.cache import cache

from queries.views import fragments, pages


@pytest.fixture(autouse=True)
def _no_cached_fragments():
    fragments.clear()
    pages.clear()
    yield
    fragments.clear()
    pages.clear()


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The review form counts posts in the cache, like the API; each test starts from zero."""
    cache.clear()
    yield
    cache.clear()
