"""A fixed-rate (open-loop) HTTP load generator, for latency at a given load.

wrk keeps N connections busy (closed loop): it measures how much a server can
take, and when the server stalls it simply sends less, so its latencies hide
the wait (coordinated omission). Debian has no wrk2, so this sends request
``i`` at ``start + i / rate`` whatever happened to the others, and times each
from that scheduled moment to the end of its response: a slow answer makes
the following ones late too, as users would see it. One new connection per
request (the app's gunicorn sync workers close after each response anyway).

The client runs on the same 2 cores as the server: its own scheduling delay
is counted in the latencies, so they err on the high side.
"""

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

MAX_OUTSTANDING = 1000


async def _request(
    host: str, port: int, message: bytes, scheduled: float, results: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(message)
        response = await reader.read()
        writer.close()
    except OSError:
        results["errors"] += 1
        return
    if response[9:12] != b"200":
        results["errors"] += 1
        return
    results["latencies"].append(loop.time() - scheduled)


async def _run(url: str, rate: float, seconds: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    message = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    results: dict[str, Any] = {"latencies": [], "errors": 0, "skipped": 0}
    total = int(rate * seconds)
    pending: set[asyncio.Task[None]] = set()
    start = loop.time() + 0.05
    sent = 0
    while sent < total:
        now = loop.time()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            scheduled = start + sent / rate
            sent += 1
            if len(pending) >= MAX_OUTSTANDING:
                results["skipped"] += 1  # the server is hopelessly behind
                continue
            task = asyncio.create_task(_request(host, port, message, scheduled, results))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
    began = time.perf_counter()
    await asyncio.gather(*pending)
    results["drain_seconds"] = time.perf_counter() - began
    return results


def fixed_rate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """Latencies (seconds, from each request's scheduled time) at ``rate`` requests/s."""
    started = time.perf_counter()
    results = asyncio.run(_run(url, rate, seconds))
    results["elapsed"] = time.perf_counter() - started
    results["target_rate"] = rate
    results["achieved_rate"] = len(results["latencies"]) / max(results["elapsed"], 1e-9)
    return results
