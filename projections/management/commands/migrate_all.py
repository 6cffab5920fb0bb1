from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Apply migrations to every database alias: the write side and the read side."

    def handle(self, *args: Any, **options: Any) -> None:
        for alias in settings.DATABASES:
            self.stdout.write(f"Migrating {alias!r}...")
            call_command("migrate", database=alias, interactive=False, verbosity=0)
        self.stdout.write(self.style.SUCCESS("Both databases are migrated."))
