from collections import Counter

import pytest

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
