"""The event log: one row per domain event, on the write database."""

from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now
from django.db.models.sql.compiler import SQLCompiler

from eventstore.correlation import REQUEST_ID_MAX_LENGTH


class CurrentTransactionId(models.Func):
    """``pg_current_xact_id()`` on PostgreSQL; 0 on SQLite, whose writers are serialized."""

    function = "pg_current_xact_id"
    output_field = models.BigIntegerField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple[Any, ...]]:
        return "0", ()


class TransactionIdField(models.BigIntegerField):
    """The writing transaction's id: ``xid8`` on PostgreSQL, an integer elsewhere."""

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "postgresql":
            return "xid8"
        return super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        return None if value is None else int(value)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if value is None or connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        return str(int(value))


class Event(models.Model):
    """One row per domain event, written in the transaction of the change.

    Readers go in ``(transaction_id, position)`` order and only below the
    oldest event writer still running (see ``eventstore.eventlog``). The table
    kept the name it had when it belonged to the projections app.
    """

    position = models.BigAutoField(primary_key=True)
    transaction_id = TransactionIdField(db_default=CurrentTransactionId(), editable=False)
    stream_type = models.CharField(max_length=40)
    stream_id = models.BigIntegerField()
    event_type = models.CharField(max_length=60)
    version = models.PositiveSmallIntegerField()
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    occurred_at = models.DateTimeField(db_default=Now())
    # The request whose command recorded the event ("" for seeding, a shell...).
    request_id = models.CharField(max_length=REQUEST_ID_MAX_LENGTH, blank=True, db_default="")

    class Meta:
        db_table = "projections_event"
        indexes = [
            models.Index(fields=["transaction_id", "position"], name="event_log_order"),
            models.Index(fields=["stream_type", "stream_id", "position"], name="event_stream"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.event_type} {self.stream_type}:{self.stream_id}"
