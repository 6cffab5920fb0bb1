import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.projectors import PROJECTIONS
from projections.verify import repair, verify

MODELS_OF = {"products": "product", "sellers": "seller"}


class Command(BaseCommand):
    help = (
        "Recompute every read-model row from the write model and compare field by field. "
        "Exits 1 on drift; --fix repairs the drifted rows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help=f"Projectors: {', '.join(PROJECTIONS)}")
        parser.add_argument("--fix", action="store_true", help="Repair the rows that drifted.")
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
            return
        if options["fix"]:
            fixed = repair(drifts)
            self.stdout.write(self.style.SUCCESS(f"Repaired {fixed} rows."))
            return
        self.stderr.write("Drift found: run again with --fix, or rebuild_projections.")
        sys.exit(1)
