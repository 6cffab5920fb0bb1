"""The request id of the work in progress: set by the web layer for each
request, written on every event the request's command records (``Event.request_id``)
and on every log line (``config.logs``), so one id follows a request from its
access log into its command, its events and its errors."""

import contextlib
import contextvars
from collections.abc import Iterator

REQUEST_ID_MAX_LENGTH = 64

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request being served, or "" outside a request."""
    return _request_id.get()


@contextlib.contextmanager
def request_id_scope(request_id: str) -> Iterator[None]:
    reset = _request_id.set(request_id[:REQUEST_ID_MAX_LENGTH])
    try:
        yield
    finally:
        _request_id.reset(reset)
