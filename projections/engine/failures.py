"""Failures: which errors are the projector's and which the infrastructure's,
and what happens to an event that keeps failing (retries with back-off, then
parked; an operator retries or skips it)."""

import logging
import traceback
from datetime import timedelta

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from eventstore.databases import READ_DB
from eventstore.eventlog import StoredEvent
from projections.engine.checkpoints import (
    checkpoint_position,
    hold_partition,
    notify_checkpoints_changed,
    wait_for_checkpoint,
)
from projections.models import Checkpoint, ParkedEvent

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


_INFRASTRUCTURE_CLASSES = frozenset({"08", "40", "53", "57", "58"})

_INFRASTRUCTURE_CODES = frozenset({"55P03", "25P03"})
# Errors of the connection itself: Django's (either backend; SQLite's "database
# is locked" too) and psycopg's when the server sent no SQLSTATE.

_CONNECTION_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def is_infrastructure_error(error: BaseException) -> bool:
    """Whether ``error`` is the infrastructure's, not the projector's: trying the
    same events again later can succeed, so it must not count toward parking.

    The chain of errors it was raised from counts too: a database error that a
    handler's or flush's own query ran into is the database's. Where the server
    gave a SQLSTATE it decides: a statement error that is not transient (an
    integrity or data error, a value too large for an index: 23, 22, 54...)
    fails the same way every time, and is counted like any handler error.
    """
    verdict = False
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, SoftTimeLimitExceeded):
            return True
        sqlstate = link.sqlstate if isinstance(link, psycopg.Error) else None
        if sqlstate:
            return sqlstate[:2] in _INFRASTRUCTURE_CLASSES or sqlstate in _INFRASTRUCTURE_CODES
        if isinstance(link, _CONNECTION_ERRORS):
            verdict = True  # unless the error it wraps has a SQLSTATE that says otherwise
        link = link.__cause__ or link.__context__
    return verdict


def record_failure(
    name: str, partition: int, partitions: int, event: StoredEvent, error: BaseException
) -> None:
    """Count a failed attempt at ``event`` on the partition, as ``partitions``
    partitions divided the products when it failed; nothing when a resize
    came between (the event may be another partition's now, or the partition
    gone: its owner meets the event afresh)."""
    logger.warning(
        "Projector %s[%s] failed on event #%s (%s): %r",
        name,
        partition,
        event.position,
        event.event_type,
        error,
    )
    with transaction.atomic(using=READ_DB):
        hold_partition(name, partition)
        checkpoint = (
            Checkpoint.objects.select_for_update()
            .filter(projector=name, partition=partition)
            .first()
        )
        if (
            checkpoint is None
            or checkpoint.partitions != partitions
            or checkpoint_position(checkpoint) >= event.log_position
        ):
            return
        checkpoint.failures += 1
        checkpoint.last_error = f"#{event.position} {event.event_type}: {error!r}"[:2000]
        delay = min(
            settings.PROJECTION_RETRY_BASE_SECONDS * 2 ** (checkpoint.failures - 1),
            MAX_BACKOFF_SECONDS,
        )
        checkpoint.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        if checkpoint.failures >= settings.PROJECTION_MAX_ATTEMPTS:
            checkpoint.halted_at_position = event.position
            checkpoint.next_attempt_at = None
            ParkedEvent.objects.create(
                projector=name,
                partition=partition,
                position=event.position,
                transaction_id=event.transaction_id,
                event_type=event.event_type,
                payload=event.payload,
                error=repr(error)[:2000],
                traceback="".join(traceback.format_exception(error))[-20000:],
                attempts=checkpoint.failures,
            )
            logger.error("Projector %s[%s] parked event #%s", name, partition, event.position)
        checkpoint.save()


def retry_parked(parked_id: int) -> ParkedEvent:
    """Let the halted partition try the parked event again."""
    with transaction.atomic(using=READ_DB):
        parked = ParkedEvent.objects.select_for_update().get(pk=parked_id)
        checkpoint = wait_for_checkpoint(parked.projector, parked.partition)
        if checkpoint.halted_at_position == parked.position:
            checkpoint.halted_at_position = None
            checkpoint.failures = 0
            checkpoint.next_attempt_at = None
            checkpoint.save()
        elif checkpoint.position >= parked.position:
            # Already past it: nothing is left to retry.
            parked.status = ParkedEvent.Status.RESOLVED
            parked.resolved_at = timezone.now()
            parked.save(update_fields=["status", "resolved_at"])
            return parked
        parked.status = ParkedEvent.Status.RETRY
        parked.save(update_fields=["status"])
    return parked


def skip_parked(parked_id: int) -> ParkedEvent:
    """Move the halted partition past the parked event without applying it."""
    with transaction.atomic(using=READ_DB):
        parked = ParkedEvent.objects.select_for_update().get(pk=parked_id)
        checkpoint = wait_for_checkpoint(parked.projector, parked.partition)
        if checkpoint.halted_at_position == parked.position:
            checkpoint.transaction_id = parked.transaction_id
            checkpoint.position = parked.position
            checkpoint.halted_at_position = None
            checkpoint.failures = 0
            checkpoint.next_attempt_at = None
            checkpoint.last_error = ""
            checkpoint.save()
            notify_checkpoints_changed()
        parked.status = ParkedEvent.Status.SKIPPED
        parked.resolved_at = timezone.now()
        parked.save(update_fields=["status", "resolved_at"])
    return parked
