from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.engine import retry_parked, skip_parked
from projections.models import ParkedEvent


class Command(BaseCommand):
    help = "List parked events, or retry or skip one (its partition resumes)."

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--retry", type=int, metavar="ID", help="Try the parked event again.")
        action.add_argument("--skip", type=int, metavar="ID", help="Move past it unapplied.")
        parser.add_argument("--all", action="store_true", help="Also list resolved ones.")

    def handle(self, *args: Any, **options: Any) -> None:
        for option, act in (("retry", retry_parked), ("skip", skip_parked)):
            if options[option] is not None:
                try:
                    parked = act(options[option])
                except ParkedEvent.DoesNotExist:
                    raise CommandError(f"No parked event {options[option]}.") from None
                self.stdout.write(f"{option.title()}: {parked} is now {parked.status}.")
                return
        events = ParkedEvent.objects.order_by("parked_at")
        if not options["all"]:
            events = events.filter(status=ParkedEvent.Status.PARKED)
        for parked in events:
            self.stdout.write(
                f"{parked.pk:>5} {parked.projector}[{parked.partition}] #{parked.position} "
                f"{parked.event_type} attempts={parked.attempts} {parked.status}: {parked.error}"
            )
        if not events:
            self.stdout.write("No parked events.")
