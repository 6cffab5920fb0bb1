"""Settings for the benchmark's web server: the app's own, plus the bench-only
endpoints of ``bench.urls`` (the naive five-table endpoint, the ceiling and
the cache-aside baseline). Never used by the app itself."""

from config.settings.local import *  # noqa: F403
from config.settings.local import env

DEBUG = False
ROOT_URLCONF = "bench.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
BENCH_CACHE_URL = env.str("BENCH_CACHE_URL", default="redis://127.0.0.1:6379/8")
BENCH_CACHE_TTL = env.float("BENCH_CACHE_TTL", default=300.0)
