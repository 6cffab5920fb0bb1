"""Locking the aggregate a command changes, and conflicts found by the database."""

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import IntegrityError, models, transaction

from eventstore.recording import lock_stream
from kernel.cleaning import clean_id
from kernel.errors import Conflict, NotFound


def locked[M: models.Model](
    model: type[M],
    pk: Any,
    *,
    stream_type: str,
    not_found: str,
    field: str,
    no_key: bool = True,
    related: Sequence[str] = (),
) -> M:
    """The row of the aggregate ``pk`` names, locked for the rest of the
    command's transaction, or ``NotFound``.

    Precondition: inside ``command_transaction``, before any write. It takes
    the aggregate's stream lock first (``lock_stream``: commands on one
    aggregate run one at a time and get their transaction ids in that order),
    then the row lock, the transaction's first write. ``no_key`` locks
    ``FOR NO KEY UPDATE``: rows that merely reference this one (foreign-key
    checks take ``FOR KEY SHARE``) are not held up, so two commands that each
    lock a product and link it to the other's do not deadlock. ``related``
    rows are read with it, not locked.
    """
    cleaned = clean_id(pk)
    row = None
    if cleaned:
        lock_stream(stream_type, cleaned)
        rows = model._default_manager.select_for_update(no_key=no_key, of=("self",))
        if related:
            rows = rows.select_related(*related)
        row = rows.filter(pk=cleaned).first()
    if row is None:
        raise NotFound(not_found, field=field)
    return row


@contextlib.contextmanager
def conflict_on_integrity_error(message: str, *, field: str | None = None) -> Iterator[None]:
    """Run the block in a savepoint; a unique constraint it breaks (a race the
    command's own check could not see) is a ``Conflict``, and the command's
    transaction goes on without the block's writes."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise Conflict(message, field=field) from None
