"""A projector running in the background, through the engine's own API."""

import contextlib
import threading
from collections.abc import Iterator

from django.db import connections

from projections.registry import project_all


@contextlib.contextmanager
def projector_running(interval: float = 0.05) -> Iterator[None]:
    """Project every partition every ``interval`` seconds while the block runs.

    Needs a transactional test (``transaction=True``): the projector's
    connections must see the commits of the test's own.
    """
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                project_all()
                stop.wait(interval)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, name="test-projector", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the projector did not stop"
    assert not errors, errors
