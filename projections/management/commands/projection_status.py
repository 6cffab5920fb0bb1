import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from eventstore import eventlog
from projections.status import partition_statuses


class Command(BaseCommand):
    help = (
        "Show every projector partition: position, events and seconds behind, parked events "
        "and owner. Exits 1 when a partition is halted or every reader is stalled behind an "
        "event writer's transaction open too long."
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
        stalled = eventlog.stalled_writers(settings.PROJECTION_STALL_SECONDS)
        for writer in stalled:
            self.stdout.write(f"stalled behind {writer.describe()}")
        if stalled:
            self.stderr.write(
                "Every projector waits for that transaction to end: it records events and has "
                "been open too long. See the README (Operations: a stalled reader)."
            )
        if any(status.halted for status in statuses):
            self.stderr.write("A partition is halted behind a parked event: see parked_events.")
        if stalled or any(status.halted for status in statuses):
            sys.exit(1)
