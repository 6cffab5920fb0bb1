"""``field__any=ids``: the ids as one array parameter instead of an IN list.

Django spells ``field__in=ids`` as ``IN (%s, %s, ...)``. With the thousands of
ids of a replay's batch, each id is prepared in Python and psycopg parses a
statement it has not seen before, every time. On PostgreSQL ``any`` sends
``= ANY(%s)`` with one integer array, a statement that stays the same; on
other databases it is ``in``. For integer columns; empty ids match nothing.
"""

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import BigIntegerField, PositiveSmallIntegerField
from django.db.models.lookups import In


@PositiveSmallIntegerField.register_lookup  # partitions
@BigIntegerField.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def get_prep_lookup(self) -> Any:
        return [int(value) for value in self.rhs]

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        if not self.rhs:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, self.rhs]
