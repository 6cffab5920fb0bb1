from tests.soak.figures import figures


def pytest_terminal_summary(terminalreporter) -> None:
    if not figures:
        return
    terminalreporter.section("soak")
    for name, value in figures.items():
        terminalreporter.write_line(f"{name:>28}: {value}")
