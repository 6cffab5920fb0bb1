"""Log lines: each carries the id of the request it was written for
(``config.middleware.RequestIdMiddleware``); in production they are JSON
lines (``LOG_FORMAT=json``), one object per record."""

import logging
import threading
import time
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from eventstore.correlation import current_request_id


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id``: the request being served, or the request
    Django's own request log names (it logs some answers after the
    middleware has returned), or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id()
        if not request_id:
            request = getattr(record, "request", None)
            request_id = getattr(request, "request_id", "") or "-"
        record.request_id = request_id
        return True


class JsonLines(JsonFormatter):
    """One JSON object per record: time, level, logger, message, request_id,
    the record's extra fields, and the traceback of an exception. Django's
    request object (an extra of its request log) is left out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "request", "server_time"],
        )


class SecurityRefusalsThinned(logging.Filter):
    """Django's security logger speaks for a client's 400s and 403s (a
    ``Host`` not in ``ALLOWED_HOSTS``, a missing CSRF token, a tampered
    session), each with a traceback. Those are worth seeing (a wrong
    ``DJANGO_ALLOWED_HOSTS`` shows only there), but a client must not be
    able to flood the log with them: of each kind, one line per
    ``INTERVAL_SECONDS``, without the traceback, saying how many were left
    out since the last."""

    INTERVAL_SECONDS = 60.0
    PREFIX = "django.security"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.PREFIX):
            return True
        now = time.monotonic()
        with self._lock:
            last = self._last.get(record.name)
            if last is not None and now - last < self.INTERVAL_SECONDS:
                self._left_out[record.name] = self._left_out.get(record.name, 0) + 1
                return False
            self._last[record.name] = now
            record.left_out = self._left_out.pop(record.name, 0)
        record.exc_info = None
        record.exc_text = None
        return True
