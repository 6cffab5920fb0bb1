from tests.chaos.tally import survived
from tests.projections.fixtures import broker, redis_server

__all__ = ["broker", "redis_server"]


def pytest_terminal_summary(terminalreporter) -> None:
    if not survived:
        return
    terminalreporter.section("chaos survived")
    for what, n in sorted(survived.items()):
        terminalreporter.write_line(f"{n:6d}  {what}")
