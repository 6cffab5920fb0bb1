"""Log lines: each carries the id of the request it was written for
(``config.middleware.RequestIdMiddleware``); in production they are JSON
lines (``LOG_FORMAT=json``), one object per record."""

import logging
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
