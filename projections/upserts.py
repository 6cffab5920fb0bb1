"""Fast upserts for projector flushes.

On PostgreSQL a few rows go through one prepared ``INSERT ... ON CONFLICT DO
UPDATE`` in psycopg's pipelined ``executemany``; many rows are COPYed into a
session scratch table and upserted by one ``INSERT ... SELECT``, which costs
the server one statement instead of one per row. Elsewhere Django's
``bulk_create(update_conflicts=True)`` does it.
"""

import dataclasses
import operator
from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
from django.db import connections, router
from django.db.models import Field, JSONField, Model
from django.db.models.base import ModelState

from eventstore.databases import WRITE_DB


def _field(model: type[Model], name: str) -> "Field[Any, Any]":
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


@cache
def _insert_fields(model: type[Model]) -> tuple[str, ...]:
    return tuple(
        field.name
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.get_internal_type() in {"AutoField", "BigAutoField"})
    )


def new_row[M: Model](model: type[M], **values: Any) -> M:
    """A new, unsaved instance of ``model`` for ``upsert``, built without
    ``Model.__init__`` (its field handling and init signals cost more than the
    rest of a projector's handler). ``values`` names every concrete field by
    its attribute name: there are no defaults."""
    expected = _attnames(model)
    if values.keys() != expected:
        raise TypeError(f"{model.__name__} needs exactly {sorted(expected)}, got {sorted(values)}")
    row = model.__new__(model)
    row.__dict__.update(values)
    row._state = ModelState()
    return row


def partial_row[M: Model](model: type[M], **values: Any) -> M:
    """An instance of a stored row with only ``values`` loaded, the other
    fields deferred as ``QuerySet.only`` leaves them, built without
    ``Model.__init__``: for ``update_columns`` of thousands of rows."""
    unknown = values.keys() - _attnames(model)
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    row = model.__new__(model)
    row.__dict__.update(values)
    row._state = ModelState()
    row._state.adding = False
    return row


@cache
def _attnames(model: type[Model]) -> frozenset[str]:
    return frozenset(field.attname for field in model._meta.concrete_fields)


def upsert(
    model: type[Model], objects: Sequence[Model], *, conflict: Sequence[str], update: Sequence[str]
) -> None:
    if not objects:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(
            objects, update_conflicts=True, unique_fields=conflict, update_fields=update
        )
        return
    import psycopg

    rows = _rows(model, objects)
    connection.ensure_connection()
    statements = _statements(model, tuple(conflict), tuple(update))
    with psycopg.Cursor(connection.connection) as cursor:
        if len(rows) < COPY_THRESHOLD:
            # Server-side binding: prepared once per connection, rows as parameters.
            cursor.executemany(statements.insert_values, rows)
            return
        # Many rows: COPY them into a scratch table, then one INSERT ... SELECT.
        cursor.execute(statements.create_scratch)
        with cursor.copy(statements.copy_scratch) as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(statements.insert_from_scratch)
        cursor.execute(statements.clear_scratch)


COPY_THRESHOLD = 20


def _rows(model: type[Model], objects: Sequence[Model]) -> list[Sequence[Any]]:
    """Each object's column values in ``_insert_fields`` order, JSON dumped."""
    values = operator.itemgetter(*(_field(model, name).attname for name in _insert_fields(model)))
    json_columns = sorted(_json_columns(model))
    if not json_columns:
        return [values(obj.__dict__) for obj in objects]
    rows: list[Sequence[Any]] = []
    for obj in objects:
        row = list(values(obj.__dict__))
        for index in json_columns:
            row[index] = _dumps(row[index])
        rows.append(row)
    return rows


def update_columns(
    model: type[Model], objects: Sequence[Model], *, key: str, fields: Sequence[str]
) -> None:
    """Write ``fields`` of existing rows, found by ``key``, and nothing else.

    On PostgreSQL one ``UPDATE ... FROM unnest(...)`` with one array per
    column; elsewhere Django's ``bulk_update``.
    """
    if not objects:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objects, fields, batch_size=500)
        return
    import psycopg

    names = (key, *fields)
    json_fields = {name for name in names if isinstance(_field(model, name), JSONField)}
    columns = [
        [
            _dumps(value) if name in json_fields else value
            for value in (getattr(obj, _field(model, name).attname) for obj in objects)
        ]
        for name in names
    ]
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_update_statement(model, key, tuple(fields)), columns)


@cache
def _update_statement(model: type[Model], key: str, fields: tuple[str, ...]) -> str:
    connection = connections[WRITE_DB]  # any PostgreSQL connection quotes alike
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(str(_field(model, name).column))

    def array_type(name: str) -> str:
        field = _field(model, name)
        if isinstance(field, JSONField):
            return "text[]"
        return f"{field.db_type(connection)}[]"

    def value(name: str) -> str:
        cast = "::jsonb" if isinstance(_field(model, name), JSONField) else ""
        return f"v.{column(name)}{cast}"

    names = (key, *fields)
    table = quote(model._meta.db_table)
    # Binary parameters: a text array in text format is quoted and escaped in
    # Python, element by element, and the lists run to thousands of JSON texts.
    arrays = ", ".join(f"%b::{array_type(name)}" for name in names)
    aliases = ", ".join(column(name) for name in names)
    updates = ", ".join(f"{column(name)} = {value(name)}" for name in fields)
    # Identifiers only, each from the model's metadata and quoted.
    return (
        f"UPDATE {table} AS t SET {updates} FROM unnest({arrays}) AS v({aliases}) "
        f"WHERE t.{column(key)} = v.{column(key)}"
    )


@dataclasses.dataclass(frozen=True)
class _Statements:
    insert_values: str
    create_scratch: str
    copy_scratch: str
    insert_from_scratch: str
    clear_scratch: str


@cache
def _statements(
    model: type[Model], conflict: tuple[str, ...], update: tuple[str, ...]
) -> _Statements:
    quote_name = connections[WRITE_DB].ops.quote_name

    def quote(name: str | None) -> str:
        assert name is not None
        return quote_name(name)

    table = quote(model._meta.db_table)
    scratch = quote(f"scratch_{model._meta.db_table}")
    columns = ", ".join(quote(_field(model, name).column) for name in _insert_fields(model))
    placeholders = ", ".join(["%s"] * len(_insert_fields(model)))
    target = ", ".join(quote(_field(model, name).column) for name in conflict)
    updates = ", ".join(
        f"{quote(_field(model, name).column)} = EXCLUDED.{quote(_field(model, name).column)}"
        for name in update
    )
    on_conflict = f"ON CONFLICT ({target}) DO UPDATE SET {updates}"
    # Identifiers only, each from the model's metadata and quoted.
    return _Statements(
        insert_values=f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) {on_conflict}",
        create_scratch=(
            f"CREATE TEMP TABLE IF NOT EXISTS {scratch} "
            f"AS SELECT {columns} FROM {table} WITH NO DATA"
        ),
        copy_scratch=f"COPY {scratch} ({columns}) FROM STDIN",
        insert_from_scratch=(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {scratch} {on_conflict}"
        ),
        clear_scratch=f"TRUNCATE {scratch}",
    )


@cache
def _json_columns(model: type[Model]) -> frozenset[int]:
    return frozenset(
        index
        for index, name in enumerate(_insert_fields(model))
        if isinstance(_field(model, name), JSONField)
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
