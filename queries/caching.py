"""HTTP caching of the query side: answers kept by row version, and the
``Cache-Control`` each kind of answer gets.

A read-model row's version (``selectors.RowVersion``: its key,
``last_position`` and ``updated_at``) names its content exactly: every write
of the row changes it. So an answer rendered from a row can be kept under its
version and never goes stale (a change makes a new key), and the same version
makes the answer's strong ETag. A query then reads the version (two narrow
columns), answers 304 when the client has it, and otherwise sends the kept
bytes or renders them once.

What caches may do with an answer (``QUERY_SHARED_MAX_AGE_SECONDS``,
``QUERY_STALE_WHILE_REVALIDATE_SECONDS``):

- a plain read: ``public``, browsers revalidate every time (``max-age=0``,
  cheap with the ETag), shared caches (a CDN, a reverse proxy) may serve it
  for ``s-maxage`` seconds and a stale one while they revalidate. The read
  model is eventually consistent anyway; these add at most that much more.
- a read that carried a consistency token: ``private, no-cache``; it waited
  for one client's write, and a shared cache must not answer the next
  token's read with it (the API's answers also ``Vary`` on the token header).
- an answer marked ``X-Read-Model-Stale``, an error, a signed-in visitor's
  page: ``no-store`` or ``private, no-cache``.
"""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import get_conditional_response, patch_vary_headers

ETAG_VERSION = "v1"
# The query side's code: what the API's ETags add to a row's version, so a
# deploy that changes how answers are rendered changes their ETags.
QUERY_SOURCES = sorted(Path(__file__).parent.glob("*.py"))
# Answers that caches may keep; the others say no-store.
CACHEABLE_STATUSES = frozenset({200, 304})
CONDITIONAL_META = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE")


class FragmentCache:
    """A small per-process LRU of rendered answers or parts of them, keyed by
    what names their content exactly (a row version, say)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get_or_render(self, key: Hashable, render: Callable[[], Any]) -> Any:
        found = self.get(key)
        if found is not None:
            return found
        rendered = render()
        self.put(key, rendered)
        return rendered

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def strong_etag(*parts: object) -> str:
    digest = hashlib.blake2b(
        "|".join(map(str, (ETAG_VERSION, *parts))).encode(), digest_size=12
    ).hexdigest()
    return f'"{digest}"'


def source_fingerprint(paths: Iterable[Path]) -> str:
    """A digest of these files' contents: what a page's ETag adds to the row's
    version, so a deploy that changes how pages look changes their ETags.
    Paths count from the project's folder, so every host of one deploy
    agrees, wherever it is checked out."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(paths):
        digest.update(path.relative_to(settings.BASE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def conditional_answer(request: HttpRequest, etag: str) -> HttpResponse | None:
    """304 (or 412) with the ETag when the request's conditions say so about
    an answer with this ETag, else None."""
    if not any(name in request.META for name in CONDITIONAL_META):
        return None
    answer = get_conditional_response(request, etag=etag)
    if answer is not None:
        answer["ETag"] = etag
    return answer


CODE_FINGERPRINT = source_fingerprint(QUERY_SOURCES)


def shared(response: HttpResponseBase, *, vary: tuple[str, ...] = ()) -> None:
    """A plain read, the same for everyone who sends the same request."""
    parts = ["public", "max-age=0"]
    if settings.QUERY_SHARED_MAX_AGE_SECONDS > 0:
        parts.append(f"s-maxage={settings.QUERY_SHARED_MAX_AGE_SECONDS}")
    else:
        parts.append("no-cache")
    if settings.QUERY_STALE_WHILE_REVALIDATE_SECONDS > 0:
        parts.append(f"stale-while-revalidate={settings.QUERY_STALE_WHILE_REVALIDATE_SECONDS}")
    response["Cache-Control"] = ", ".join(parts)
    if vary:
        patch_vary_headers(response, vary)


def private(response: HttpResponseBase, *, vary: tuple[str, ...] = ()) -> None:
    """One client's read (a consistency token's, a signed-in visitor's page)."""
    response["Cache-Control"] = "private, no-cache"
    if vary:
        patch_vary_headers(response, vary)


def never(response: HttpResponseBase) -> None:
    """An answer no cache may keep: an error, one marked stale."""
    response["Cache-Control"] = "no-store"
