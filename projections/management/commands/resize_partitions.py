from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.registry import PROJECTIONS
from projections.resize import MAX_PARTITIONS, ResizeRefused, resize


def partitioned_projectors() -> list[str]:
    return [name for name, projection in PROJECTIONS.items() if projection.partitioned]


class Command(BaseCommand):
    help = (
        "Change how many partitions the projectors have (or one of them), online: each "
        "step splits every "
        "partition in two or merges pairs back, in one short transaction while commands "
        "and projectors go on (see projections.resize)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "partitions",
            type=int,
            help=(
                f"The new count, from 1 to {MAX_PARTITIONS}: the current one times or "
                "divided by a power of two."
            ),
        )
        parser.add_argument(
            "--projector",
            choices=partitioned_projectors(),
            default=None,
            help="Only this projector (default: every one, one after the other).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = [options["projector"]] if options["projector"] else partitioned_projectors()
        for name in names:
            try:
                steps = resize(name, options["partitions"], log=self.stdout.write)
            except ResizeRefused as refused:
                raise CommandError(str(refused)) from None
            if not steps:
                self.stdout.write(f"{name} has {options['partitions']} partitions already.")
