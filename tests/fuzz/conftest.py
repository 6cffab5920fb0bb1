from collections import Counter

import pytest
from django.core import signals
from django.db import close_old_connections

# Requests the fuzz tests sent, by status class; printed in the summary.
answered: Counter[str] = Counter()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    if not answered:
        return
    terminalreporter.section("fuzz")
    total = sum(answered.values())
    classes = ", ".join(f"{name}: {n}" for name, n in sorted(answered.items()))
    terminalreporter.write_line(f"{total} requests ({classes})")


@pytest.fixture
def keep_the_test_connection():
    """Requests go through the WSGI app in this process. Like Django's test
    client, keep the test's connection open across them: the test runs inside
    a transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
