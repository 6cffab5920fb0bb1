"""The command side's metrics (Prometheus): each command's outcome and latency.

Metrics are ``prometheus-client`` objects in the default registry. With
``PROMETHEUS_MULTIPROC_DIR`` set before the process starts, every process
(gunicorn workers, Celery, ``run_projectors``) writes them to files in that
folder and ``/metrics`` sums them (``config.metrics``).
"""

import functools
import time
from collections.abc import Callable

from django.db import IntegrityError
from prometheus_client import Counter, Histogram

from kernel.errors import Conflict, DomainError, InvalidInput, NotAllowed, NotFound

COMMANDS = Counter(
    "storefront_commands",
    "Commands run, by command and outcome (ok, or why it was refused or failed).",
    ["command", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "storefront_command_seconds",
    "How long commands took, refused ones included.",
    ["command"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Refusals, most specific first; IntegrityError is a reference that went away
# meanwhile (the API answers 409, as for a conflict).
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (InvalidInput, "invalid"),
    (NotFound, "not_found"),
    (NotAllowed, "not_allowed"),
    (Conflict, "conflict"),
    (DomainError, "refused"),
    (IntegrityError, "conflict"),
)


OUTCOMES = ("ok", *dict.fromkeys(outcome for _, outcome in _OUTCOMES), "failed")


def outcome_of(error: BaseException) -> str:
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):
            return outcome
    return "failed"


def measured_command[**P, T](service: Callable[P, T]) -> Callable[P, T]:
    """Count a service's runs by outcome and time them, under its own name."""
    name = service.__name__
    seconds = COMMAND_SECONDS.labels(name)
    for outcome in OUTCOMES:
        # Every series exists from the start at 0, so the first failure is a
        # rise that rate() and increase() see.
        COMMANDS.labels(name, outcome)

    @functools.wraps(service)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            result = service(*args, **kwargs)
        except BaseException as error:
            COMMANDS.labels(name, outcome_of(error)).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)
        COMMANDS.labels(name, "ok").inc()
        return result

    return run
