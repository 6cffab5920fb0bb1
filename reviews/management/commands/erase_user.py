from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kernel.errors import DomainError
from reviews.services import user_erase


class Command(BaseCommand):
    help = (
        "Erase a user: remove each of their reviews with its ReviewRemoved event, redact "
        "their name and review texts in the event log, and delete the user. Cannot be undone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The user's username, or their id.")
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = self._find(options["user"])
        reviews = user.reviews.count()  # type: ignore[attr-defined]
        if options["interactive"]:
            answer = input(
                f"Erase user #{user.pk} “{user.get_username()}” and their {reviews} review(s)? "
                "This cannot be undone. Type 'yes' to go on: "
            )
            if answer != "yes":
                raise CommandError("Erasure cancelled.")
        try:
            erased = user_erase(user_id=user.pk)
        except DomainError as refused:
            raise CommandError(refused.message) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Erased user #{erased.user_id}: {erased.reviews_removed} review(s) removed "
                f"with their events, {erased.events_redacted} event(s) redacted."
            )
        )

    def _find(self, name_or_id: str) -> Any:
        """By username; by id when no username matches. A value that is one
        user's username and another's id is refused rather than guessed."""
        users = get_user_model().objects
        by_name = users.filter(**{users.model.USERNAME_FIELD: name_or_id}).first()
        is_id = name_or_id.isascii() and name_or_id.isdigit() and len(name_or_id) < 19
        by_id = users.filter(pk=int(name_or_id)).first() if is_id else None
        if by_name is not None and by_id is not None and by_name != by_id:
            raise CommandError(
                f"“{name_or_id}” is the username of user #{by_name.pk} and the id of user "
                f"“{by_id.get_username()}”: give {by_name.pk} for the first or "
                f"“{by_id.get_username()}” for the second."
            )
        user = by_name or by_id
        if user is None:
            raise CommandError(f"No user with the username or id “{name_or_id}”.")
        return user
