import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from projections.rebuild import RebuildRunning, rebuild
from projections.registry import PROJECTIONS


class Command(BaseCommand):
    help = (
        "Rebuild the read models beside the live ones, catch up with new events, and swap "
        "them in under a short lock. Readers and writers carry on meanwhile. Resumable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names",
            nargs="*",
            help="Projectors to rebuild. The read side is rebuilt as a whole, so naming "
            "any of them rebuilds all: " + ", ".join(PROJECTIONS),
        )
        parser.add_argument(
            "--from-events",
            action="store_true",
            help="Replay the whole event log through the handlers instead of starting "
            "from a snapshot of the write model.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Events a batch applies, each batch one transaction (default 400,000 while "
            "replaying, 20,000 while catching up).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = set(options["names"]) - set(PROJECTIONS)
        if unknown:
            raise CommandError(f"Unknown projectors: {', '.join(sorted(unknown))}")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        started = time.monotonic()
        reporter = _Progress(self.stderr)
        try:
            run = rebuild(
                from_events=options["from_events"],
                batch_size=options["batch_size"],
                progress=reporter.update,
                log=self.stdout.write,
            )
        except RebuildRunning as running:
            raise CommandError(str(running)) from None
        finally:
            reporter.close()
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Rebuild #{run.pk} ({run.mode}): {run.rows} rows, {run.events} events "
                f"replayed, {elapsed:.1f} s. {run.message}"
            )
        )


class _Progress:
    """A bar with rate and ETA on a terminal; a line per 10% otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bars: dict[str, tqdm[Any]] = {}
        self.reported: dict[str, int] = {}

    def update(self, what: str, done: int, total: int) -> None:
        if self.interactive:
            bar = self.bars.get(what)
            if bar is None:
                bar = self.bars[what] = tqdm(total=total, desc=what, unit=" " + what)
            bar.total = max(total, done)
            bar.update(done - bar.n)
            return
        tenth = 10 * done // total if total else 10
        if tenth != self.reported.get(what):
            self.reported[what] = tenth
            self.stream.write(f"{what}: {done}/{total}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
