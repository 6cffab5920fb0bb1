from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.resize import MAX_PARTITIONS, ResizeRefused, resize


class Command(BaseCommand):
    help = (
        "Change how many partitions a projector has, online: each step splits every "
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
            "--projector", default="products", help="The partitioned projector (default: products)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            steps = resize(options["projector"], options["partitions"], log=self.stdout.write)
        except ResizeRefused as refused:
            raise CommandError(str(refused)) from None
        if not steps:
            self.stdout.write(
                f"{options['projector']} has {options['partitions']} partitions already."
            )
