"""A fixed-rate (open-loop) HTTP load generator, for latency at a given load.

wrk keeps N connections busy (closed loop): it measures how much a server can
take, and when the server stalls it simply sends less, so its latencies hide
the wait (coordinated omission). Debian has no wrk2, so this sends request
``i`` at ``start + i / rate`` whatever happened to the others, and times each
from that scheduled moment to the end of its response: a slow answer makes
the following ones late too, as users would see it. One new connection per
request (the app's gunicorn sync workers close after each response anyway).

It runs on the same 2 cores as the server, so it is kept cheap: non-blocking
sockets and one ``selectors`` loop, no asyncio objects per request. Its own
delay is counted in the latencies, so they err on the high side; against a
bare WSGI app it adds about a millisecond.
"""

import selectors
import socket
import time
from typing import Any
from urllib.parse import urlsplit

MAX_OUTSTANDING = 1000
DRAIN_SECONDS = 60  # after the last request is due; what is still open then failed


class _Request:
    __slots__ = ("head", "scheduled", "sock")

    def __init__(self, sock: socket.socket, scheduled: float) -> None:
        self.sock = sock
        self.scheduled = scheduled
        self.head = b""


def fixed_rate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Latencies (seconds, from each request's scheduled time) at ``rate`` requests/s."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    message = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = skipped = sent = 0
    total = int(rate * seconds)
    clock = time.perf_counter
    start = clock() + 0.05
    outstanding = 0

    def finish(request: _Request, ok: bool) -> None:
        nonlocal errors, outstanding
        selector.unregister(request.sock)
        request.sock.close()
        outstanding -= 1
        if ok and request.head[9:12] == b"200":
            latencies.append(clock() - request.scheduled)
        else:
            errors += 1

    while sent < total or outstanding:
        now = clock()
        if sent == total and now > start + seconds + DRAIN_SECONDS:
            for key in list(selector.get_map().values()):
                finish(key.data, False)
            break
        while sent < total and start + sent / rate <= now:
            scheduled = start + sent / rate
            sent += 1
            if outstanding >= MAX_OUTSTANDING:
                skipped += 1  # the server is hopelessly behind
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(address)
            selector.register(sock, selectors.EVENT_WRITE, _Request(sock, scheduled))
            outstanding += 1
        timeout = max(0.0, start + sent / rate - clock()) if sent < total else 0.1
        for key, mask in selector.select(timeout):
            request: _Request = key.data
            try:
                if mask & selectors.EVENT_WRITE:
                    request.sock.send(message)
                    selector.modify(request.sock, selectors.EVENT_READ, request)
                    continue
                chunk = request.sock.recv(65536)
            except OSError:
                finish(request, False)
                continue
            if chunk:
                if len(request.head) < 12:
                    request.head += chunk[:12]
            else:
                finish(request, True)
    elapsed = clock() - start
    selector.close()
    return {
        "latencies": latencies,
        "errors": errors,
        "skipped": skipped,
        "elapsed": elapsed,
        "target_rate": rate,
        "achieved_rate": len(latencies) / max(elapsed, 1e-9),
    }
