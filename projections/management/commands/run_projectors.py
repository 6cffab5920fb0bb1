from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.registry import PROJECTIONS
from projections.runner import ProjectorLoop

MAX_DEFAULT_THREADS = 8


class Command(BaseCommand):
    help = (
        "Run the projectors: apply new events to the read models until stopped "
        "(SIGTERM/SIGINT stop it after the current batch)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help=f"Projectors to run: {', '.join(PROJECTIONS)}")
        parser.add_argument("--once", action="store_true", help="Catch up once, then exit.")
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help=(
                "Partitions projected at once by this process (default: one thread per "
                f"partition, at most {MAX_DEFAULT_THREADS}). A batch mostly waits on the "
                "databases, so the partitions' waits overlap."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = set(options["names"]) - set(PROJECTIONS)
        if unknown:
            raise CommandError(f"Unknown projectors: {', '.join(sorted(unknown))}")
        names = options["names"] or list(PROJECTIONS)
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        projections = [PROJECTIONS[name] for name in names]
        threads = options["threads"]
        if threads is None:
            partitions = sum(projection.partition_count() for projection in projections)
            threads = min(partitions, MAX_DEFAULT_THREADS)
        if not 1 <= threads <= 64:
            raise CommandError("--threads must be from 1 to 64.")
        loop = ProjectorLoop(projections, batch_size=options["batch_size"], threads=threads)
        if options["once"]:
            applied = loop.run_until_caught_up()
            self.stdout.write(f"Applied {applied} events.")
            return
        loop.install_signal_handlers()
        self.stdout.write(f"Projecting {', '.join(names)} as {loop.owner}. Ctrl-C stops.")
        loop.run_forever()
        self.stdout.write("Stopped.")
