import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.registry import PROJECTIONS
from projections.repair import RepairRefused, repair
from projections.verify import verify

MODELS_OF = {"products": "product", "sellers": "seller"}


class Command(BaseCommand):
    help = (
        "Recompute every read-model row from the write model and compare field by field. "
        "Exits 1 on drift. --fix holds the projectors, makes every read-side store exact as of "
        "one snapshot of the write model and moves their checkpoints there: safe while "
        "commands flow."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help=f"Projectors: {', '.join(PROJECTIONS)}")
        parser.add_argument(
            "--fix", action="store_true", help="Repair the read side (every store), exactly."
        )
        parser.add_argument("--sample", type=int, help="Check N random products only.")
        parser.add_argument("--seed", type=int, help="Random seed for --sample.")

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = set(options["names"]) - set(PROJECTIONS)
        if unknown:
            raise CommandError(f"Unknown projectors: {', '.join(sorted(unknown))}")
        if options["sample"] is not None and options["sample"] < 1:
            raise CommandError("--sample must be at least 1.")
        wanted = {MODELS_OF[name] for name in options["names"] or PROJECTIONS}
        drifts = [
            d for d in verify(sample=options["sample"], seed=options["seed"]) if d.model in wanted
        ]
        drifted = False
        for drift in drifts:
            self.stdout.write(f"{drift.model}s: {drift.checked} checked, {len(drift.rows)} drifted")
            for line in drift.examples():
                self.stdout.write(f"  {line}")
            drifted = drifted or bool(drift.rows)
        if not drifted:
            self.stdout.write(self.style.SUCCESS("No drift."))
        if options["fix"]:
            self._fix()
            return
        if drifted:
            self.stderr.write(
                "Drift found: run again with --fix, or rebuild_projections. On a live system a "
                "row may only be waiting for its latest events: run again to tell."
            )
            sys.exit(1)

    def _fix(self) -> None:
        try:
            repaired = repair()
        except RepairRefused as error:
            raise CommandError(f"Not repaired: {error}") from error
        for store, count in repaired.counts.items():
            if count:
                self.stdout.write(f"  {store}: {count} rewritten")
        self.stdout.write(
            self.style.SUCCESS(f"Repaired {repaired.total} entries; the read side is exact.")
        )
