"""ORM queries compiled once and run many times: the reads of every batch.

A batch of a few events runs a handful of small queries (the checkpoint, the
facts and rows of its products), and building and compiling each of them
with the ORM costs the worker several times what PostgreSQL spends running
it. ``CompiledQuery`` builds its queryset once per database, with stand-in
values, keeps the SQL and where each value goes in its parameters, and runs
that SQL with the values of each call; the rows come back as the ORM would
give them (instances through ``Model.from_db``, tuples for ``values_list``),
through the field converters the ORM chose.

Only on PostgreSQL, whose ``__any`` lookup (``projections.lookups``) keeps an
id list one parameter. On other databases, and for a call with an empty id
list (the ORM may answer it without a query), the queryset is built and run
as usual. The build must use its arguments as filter values only.
"""

import dataclasses
from collections.abc import Callable, Collection, Iterable
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable
from django.db.transaction import TransactionManagementError

# Stand-in values, within the range of the smallest integer columns (the
# ORM finds no rows for a value out of its column's range, without a query).
_STAND_IN_BASES = (30001, 31001)

type Converters = tuple[int, tuple[list[Callable[..., Any]], Any]]


@dataclasses.dataclass(frozen=True)
class _Plan:
    sql: str
    # Per parameter: the argument it takes, or None to keep ``constant``.
    sources: list[tuple[str | None, Any]]
    converters: list[Converters]
    model: type[Model] | None  # None: rows as tuples
    field_names: list[str]
    flat: bool
    for_update: bool


class CompiledQuery:
    """``build(**values)`` compiled once per database; call it with the values."""

    def __init__(self, using: str, build: Callable[..., QuerySet[Any]]) -> None:
        self.using = using
        self.build = build
        self._plans: dict[tuple[str, str, tuple[str, ...]], _Plan] = {}

    def __call__(self, **values: Any) -> list[Any]:
        connection = connections[self.using]
        if connection.vendor != "postgresql" or any(
            _is_ids(value) and not value for value in values.values()
        ):
            return list(self.build(**values).using(self.using))
        if any(value is None for value in values.values()):
            raise TypeError("None does not compile (the ORM would write IS NULL)")
        key = (connection.vendor, connection.settings_dict["NAME"], tuple(sorted(values)))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(values)
        if plan.for_update and connection.get_autocommit():
            # As the ORM refuses it: the rows' locks would end with the statement.
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        params = [
            constant if name is None else _prepared(values[name]) for name, constant in plan.sources
        ]
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            rows = cursor.fetchall()
        return list(_shaped(plan, rows, connection, self.using))

    def _compile(self, values: dict[str, Any]) -> _Plan:
        """Compiled twice, with two sets of stand-ins: a parameter that
        differs between the two comes from the argument whose stand-in it
        equals, one that does not is a constant of the query."""
        compiled = []
        for base in _STAND_IN_BASES:
            stand_ins = {
                name: _stand_in(name, value, base + n)
                for n, (name, value) in enumerate(sorted(values.items()))
            }
            queryset = self.build(**stand_ins).using(self.using)
            compiler = queryset.query.get_compiler(using=self.using)
            compiled.append((stand_ins, *compiler.as_sql()))
        (stand_ins, sql, first), (_, other_sql, second) = compiled
        if sql != other_sql or len(first) != len(second):
            raise ValueError("the query's shape depends on its values")
        sources: list[tuple[str | None, Any]] = []
        for param, other in zip(first, second, strict=True):
            if param == other:
                sources.append((None, param))
                continue
            names = [name for name, stand_in in stand_ins.items() if param == stand_in]
            if len(names) != 1:
                raise ValueError(f"a parameter of the query is not one argument: {param!r}")
            sources.append((names[0], None))
        unused = set(values) - {name for name, _ in sources}
        if unused:
            raise ValueError(f"{sorted(unused)} do not reach the query's parameters")
        columns = [column for column, _, _ in compiler.select]
        converters = list(compiler.get_converters(columns).items())
        iterable = queryset._iterable_class
        if iterable is ModelIterable:
            if compiler.klass_info is None or compiler.klass_info.get("related_klass_infos"):
                raise ValueError("only plain querysets of one model compile")
            return _Plan(
                sql,
                sources,
                converters,
                queryset.model,
                [column.target.attname for column in columns],
                flat=False,
                for_update=queryset.query.select_for_update,
            )
        if iterable not in (ValuesListIterable, FlatValuesListIterable):
            raise ValueError(f"{iterable.__name__} results do not compile")
        return _Plan(
            sql,
            sources,
            converters,
            None,
            [],
            flat=iterable is FlatValuesListIterable,
            for_update=queryset.query.select_for_update,
        )


def _is_ids(value: Any) -> bool:
    return isinstance(value, Collection) and not isinstance(value, str)


def _stand_in(name: str, value: Any, number: int) -> Any:
    if _is_ids(value):
        return [number]
    if isinstance(value, str):
        return f"stand-in {number} for {name}"
    if isinstance(value, int) and not isinstance(value, bool):
        return number
    raise TypeError(f"{name}: only strings, integers and id collections compile")


def _prepared(value: Any) -> Any:
    """As the lookups prepare it: ``__any`` takes the ids as a list of ints."""
    return [int(item) for item in value] if _is_ids(value) else value


def _shaped(plan: _Plan, rows: Iterable[tuple[Any, ...]], connection: Any, using: str) -> Any:
    for row in rows:
        values = list(row)
        for position, (functions, expression) in plan.converters:
            for convert in functions:
                values[position] = convert(values[position], expression, connection)
        if plan.model is not None:
            yield plan.model.from_db(using, plan.field_names, values)
        elif plan.flat:
            yield values[0]
        else:
            yield tuple(values)
