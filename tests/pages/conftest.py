import pytest

from projections.views import fragments


@pytest.fixture(autouse=True)
def _no_cached_fragments():
    fragments.clear()
    yield
    fragments.clear()
