import sys
from typing import Any

from django.core.management.base import BaseCommand

from projections.status import partition_statuses


class Command(BaseCommand):
    help = (
        "Show every projector partition: position, events and seconds behind, parked events "
        "and owner. Exits 1 when a partition is halted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = partition_statuses()
        header = (
            f"{'projector':<10} {'part':>4} {'position':>16} {'applied':>9} {'behind':>8} "
            f"{'seconds':>8} {'parked':>6}  state     owner"
        )
        self.stdout.write(header)
        for status in statuses:
            state = "HALTED" if status.halted else ("retrying" if status.failures else "ok")
            owner = status.owner if status.owner_is_live else "-"
            self.stdout.write(
                f"{status.projector:<10} {status.partition:>4} {status.position.token():>16} "
                f"{status.events_applied:>9} {status.events_behind:>8} "
                f"{status.seconds_behind:>8.1f} {status.parked:>6}  {state:<9} {owner}"
            )
            if status.last_error:
                self.stdout.write(f"{'':>16}last error: {status.last_error}")
        if any(status.halted for status in statuses):
            self.stderr.write("A partition is halted behind a parked event: see parked_events.")
            sys.exit(1)
