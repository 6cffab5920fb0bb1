"""The honest ceiling's settings: the bench's own (the same databases and
connection options), with no middleware at all and one URL, the stored
answer by key (``bench.bare_urls``). Served by plain Django's WSGI handler
(``bench.bare_wsgi``): what Django itself can do, whatever the project adds."""

from bench.settings import *  # noqa: F403

MIDDLEWARE: list[str] = []  # type: ignore[no-redef]
ROOT_URLCONF = "bench.bare_urls"
