"""Loading rows fast: COPY on PostgreSQL (indexes and constraints dropped and
rebuilt around a large load), batched INSERTs elsewhere."""

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from django.db import DatabaseError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, JSONField, Model

INSERT_BATCH = 2000
PROGRESS_STEP = 10_000
# Below this many new rows a table keeps its indexes during the load.
REBUILD_FROM_ROWS = 10_000

USER_FIELDS = (
    *("id", "password", "is_superuser", "username", "first_name", "last_name"),
    *("email", "is_staff", "is_active", "date_joined"),
)
PRODUCT_FIELDS = (
    *("id", "seller", "name", "slug", "description", "price", "stock_quantity"),
    *("is_active", "created_at", "updated_at"),
)
REVIEW_FIELDS = ("id", "product", "author", "rating", "body", "created_at", "is_hidden")
EVENT_FIELDS = ("stream_type", "stream_id", "event_type", "version", "payload")


class Progress(Protocol):
    """Opens a progress display for ``total`` items of one kind; the callable
    it yields is called with the number of items just done."""

    def __call__(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


def chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class Tables:
    """Reserves ids and writes rows on one connection; a subclass per database."""

    def __init__(self, connection: BaseDatabaseWrapper, progress: Progress) -> None:
        self.connection = connection
        self.progress = progress
        self.written: set[str] = set()

    @staticmethod
    def for_connection(connection: BaseDatabaseWrapper, progress: Progress) -> "Tables":
        if connection.vendor == "postgresql":
            return PostgresTables(connection, progress)
        return InsertTables(connection, progress)

    def reserve(self, model: type[Model], count: int) -> int:
        """The first of ``count`` consecutive unused ids of ``model``'s table."""
        raise NotImplementedError

    @contextlib.contextmanager
    def loading(self, new_rows: Mapping[type[Model], int]) -> Iterator[None]:
        """Around the writes of a load of ``new_rows`` rows per table."""
        yield

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        """Insert ``rows`` (values of ``fields``; JSON fields as JSON text)."""
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh the planner's statistics of the tables just filled."""

    def _fields(self, model: type[Model], names: Sequence[str]) -> list["Field[Any, Any]"]:
        fields = []
        for name in names:
            field = model._meta.get_field(name)
            assert isinstance(field, Field)
            fields.append(field)
        return fields

    def _target(self, model: type[Model], fields: Sequence["Field[Any, Any]"]) -> str:
        quote = self.connection.ops.quote_name
        columns = ", ".join(quote(str(field.column)) for field in fields)
        return f"{quote(model._meta.db_table)} ({columns})"


class PostgresTables(Tables):
    def reserve(self, model: type[Model], count: int) -> int:
        if not count:
            return 0
        table = model._meta.db_table
        assert model._meta.pk is not None
        with self.connection.cursor() as cursor:
            # Nobody else inserts (and so takes ids) until this transaction ends.
            cursor.execute(
                f"LOCK TABLE {self.connection.ops.quote_name(table)} IN SHARE ROW EXCLUSIVE MODE"
            )
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, model._meta.pk.column])
            sequence = cursor.fetchone()[0]
            cursor.execute("SELECT nextval(%s)", [sequence])
            first = int(cursor.fetchone()[0])
            if count > 1:
                cursor.execute("SELECT setval(%s, %s)", [sequence, first + count - 1])
        return first

    @contextlib.contextmanager
    def loading(self, new_rows: Mapping[type[Model], int]) -> Iterator[None]:
        """Drop the secondary indexes and constraints of every table that the
        load at least doubles, and add them back after the writes."""
        restore: list[str] = []
        for model, adding in new_rows.items():
            if adding >= REBUILD_FROM_ROWS and self._rows_up_to(model, adding) <= adding:
                restore.extend(self._drop_secondary(model))
        yield
        with self.progress("indexes", len(restore)) as advance, self.connection.cursor() as cursor:
            for statement in restore:
                cursor.execute(statement)
                advance(1)

    def _rows_up_to(self, model: type[Model], limit: int) -> int:
        table = self.connection.ops.quote_name(model._meta.db_table)
        with self.connection.cursor() as cursor:
            sample = f"SELECT FROM {table} LIMIT %s"
            cursor.execute(f"SELECT count(*) FROM ({sample}) AS rows", [limit + 1])  # noqa: S608
            return int(cursor.fetchone()[0])

    def _drop_secondary(self, model: type[Model]) -> list[str]:
        """Drop ``model``'s indexes other than its primary key, and its unique
        and foreign-key constraints; return the statements that restore them.

        Only the table's owner may; anyone else loads with the indexes in place.
        """
        table = model._meta.db_table
        quote = self.connection.ops.quote_name
        with self.connection.cursor() as cursor:
            cursor.execute(
                """SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint
                   WHERE conrelid = %s::regclass AND contype IN ('u', 'f')
                   ORDER BY contype DESC, conname""",
                [quote(table)],
            )
            constraints = cursor.fetchall()
            cursor.execute(
                """SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
                   WHERE indrelid = %s::regclass AND NOT indisprimary AND NOT EXISTS (
                       SELECT FROM pg_constraint
                       WHERE conrelid = indrelid AND conindid = indexrelid)
                   ORDER BY 1""",
                [quote(table)],
            )
            indexes = cursor.fetchall()
            try:
                with transaction.atomic(using=self.connection.alias):
                    for name, _, _ in constraints:
                        cursor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
                    for name, _ in indexes:
                        cursor.execute(f"DROP INDEX {name}")
            except DatabaseError:
                return []
        return [definition for _, definition in indexes] + [
            f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}"
            for name, definition, _ in constraints
        ]

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        columns = self._fields(model, fields)
        self.written.add(model._meta.db_table)
        with (
            self.progress(label, total) as advance,
            self.connection.cursor() as cursor,
            cursor.copy(f"COPY {self._target(model, columns)} FROM STDIN") as copy,
        ):
            for chunk in chunks(rows, PROGRESS_STEP):
                for row in chunk:
                    copy.write_row(row)
                advance(len(chunk))

    def analyze(self) -> None:
        if self.written:
            quote = self.connection.ops.quote_name
            with self.connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {', '.join(sorted(map(quote, self.written)))}")


class InsertTables(Tables):
    """Batched ``INSERT``s, values prepared by the model fields as the ORM would."""

    def reserve(self, model: type[Model], count: int) -> int:
        table = self.connection.ops.quote_name(model._meta.db_table)
        assert model._meta.pk is not None
        pk = self.connection.ops.quote_name(str(model._meta.pk.column))
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT max({pk}) FROM {table}")  # noqa: S608
            highest = cursor.fetchone()[0] or 0
            if self.connection.vendor == "sqlite":
                cursor.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = %s", [model._meta.db_table]
                )
                row = cursor.fetchone()
                highest = max(highest, row[0] if row else 0)
        return int(highest) + 1

    def write(
        self,
        model: type[Model],
        fields: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        label: str,
        total: int,
    ) -> None:
        columns = self._fields(model, fields)
        connection = self.connection
        statement = (
            f"INSERT INTO {self._target(model, columns)} "  # noqa: S608 (names from the model)
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        # JSON columns come as JSON text already.
        prepare = [
            as_is if isinstance(column, JSONField) else column.get_db_prep_save
            for column in columns
        ]
        with self.progress(label, total) as advance, connection.cursor() as cursor:
            for chunk in chunks(rows, INSERT_BATCH):
                cursor.executemany(
                    statement,
                    [
                        [
                            to_db(value, connection)
                            for to_db, value in zip(prepare, row, strict=True)
                        ]
                        for row in chunk
                    ],
                )
                advance(len(chunk))


def as_is(value: Any, connection: BaseDatabaseWrapper) -> Any:
    return value
