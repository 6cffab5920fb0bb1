"""Queries over the read models. Everything here reads alias ``read`` only.

The product list pages by keyset ("cursor"): each ordering is a total order,
its field then the product id, so a page starts right after the last row of
the previous one, whatever was inserted meanwhile, and uses the read model's
``(field, product_id)`` indexes instead of an OFFSET.
"""

import base64
import binascii
import dataclasses
import datetime
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connections
from django.db.models import F, JSONField, Model, OrderBy, Q, QuerySet

from eventstore.databases import READ_DB
from projections.models import ProductReadModel, SellerReadModel, StockStatus

MAX_ID = 2**63 - 1

# The fields of a product list entry; the big JSON columns stay on the server.
LIST_FIELDS = (
    "product_id",
    "name",
    "slug",
    "price",
    "currency",
    "stock_quantity",
    "stock_status",
    "avg_rating",
    "review_count",
    "seller_id",
    "seller_name",
    "seller_reputation",
    "last_position",
    "updated_at",
)


@dataclasses.dataclass(frozen=True)
class SortOrder:
    """Order by ``field`` then by ``product_id``; unrated (NULL) rows sort last
    in the descending order of a nullable field and first in its reverse."""

    field: str
    descending: bool
    id_descending: bool
    nullable: bool = False

    @property
    def nulls_last(self) -> bool:
        return self.nullable and self.descending

    def order_by(self) -> tuple[OrderBy, OrderBy]:
        if self.nullable:
            first = (
                F(self.field).desc(nulls_last=True)
                if self.descending
                else F(self.field).asc(nulls_first=True)
            )
        else:
            first = F(self.field).desc() if self.descending else F(self.field).asc()
        then = F("product_id").desc() if self.id_descending else F("product_id").asc()
        return first, then

    def reversed(self) -> "SortOrder":
        return dataclasses.replace(
            self, descending=not self.descending, id_descending=not self.id_descending
        )

    def after(self, value: Any, product_id: int) -> Q:
        """Rows that come after ``(value, product_id)`` in this order."""
        id_beyond = (
            Q(product_id__lt=product_id) if self.id_descending else Q(product_id__gt=product_id)
        )
        is_null = Q(**{f"{self.field}__isnull": True})
        if value is None:
            if self.nulls_last:
                return is_null & id_beyond
            return (is_null & id_beyond) | ~is_null
        beyond = Q(**{f"{self.field}__{'lt' if self.descending else 'gt'}": value})
        condition = beyond | (Q(**{self.field: value}) & id_beyond)
        if self.nulls_last:
            condition |= is_null
        return condition


ORDERINGS: dict[str, SortOrder] = {
    "name": SortOrder("name", descending=False, id_descending=False),
    "-name": SortOrder("name", descending=True, id_descending=True),
    "price": SortOrder("price", descending=False, id_descending=False),
    "-price": SortOrder("price", descending=True, id_descending=True),
    "-avg_rating": SortOrder("avg_rating", descending=True, id_descending=False, nullable=True),
    "avg_rating": SortOrder("avg_rating", descending=False, id_descending=True, nullable=True),
    "-review_count": SortOrder("review_count", descending=True, id_descending=False),
    "review_count": SortOrder("review_count", descending=False, id_descending=True),
}
DEFAULT_ORDERING = "name"
ORDERING_LABELS = {
    "name": "Name, A to Z",
    "-name": "Name, Z to A",
    "price": "Price, low to high",
    "-price": "Price, high to low",
    "-avg_rating": "Best rated",
    "avg_rating": "Worst rated",
    "-review_count": "Most reviewed",
    "review_count": "Least reviewed",
}


class InvalidCursor(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Cursor:
    """A position in one ordering of the list: the sort value and id of a row.

    ``backwards`` cursors point at the page before that row.
    """

    ordering: str
    value: Any
    product_id: int
    backwards: bool = False

    def encode(self) -> str:
        value = None if self.value is None else str(self.value)
        raw = json.dumps(
            [self.ordering, value, self.product_id, int(self.backwards)], separators=(",", ":")
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, ordering: str) -> "Cursor":
        """Parse a cursor made by ``encode`` for ``ordering``; raises InvalidCursor."""
        if len(text) > 600:
            raise InvalidCursor("Invalid cursor.")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            name, value, product_id, backwards = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidCursor("Invalid cursor.") from None
        if name != ordering:
            raise InvalidCursor("This cursor belongs to another ordering; start again.")
        if (
            isinstance(product_id, bool)
            or not isinstance(product_id, int)
            or not 0 < product_id <= MAX_ID
            or backwards not in (0, 1)
        ):
            raise InvalidCursor("Invalid cursor.")
        order = ORDERINGS[ordering]
        return cls(ordering, _parse_sort_value(order, value), product_id, bool(backwards))


def _parse_sort_value(order: SortOrder, value: Any) -> Any:
    if value is None:
        if not order.nullable:
            raise InvalidCursor("Invalid cursor.")
        return None
    if not isinstance(value, str) or len(value) > 250 or "\x00" in value:
        raise InvalidCursor("Invalid cursor.")
    if order.field == "name":
        return value
    try:
        if order.field == "review_count":
            number = int(value)
            if not 0 <= number <= MAX_ID:
                raise ValueError
            return number
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidCursor("Invalid cursor.") from None
    if not amount.is_finite() or abs(amount) >= Decimal("1e10"):
        raise InvalidCursor("Invalid cursor.")
    return amount


@dataclasses.dataclass(frozen=True)
class ProductFilters:
    seller_id: int | None = None
    min_rating: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None
    search: str = ""


@dataclasses.dataclass(frozen=True)
class ProductPage:
    products: list[ProductReadModel]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None


def _filtered(filters: ProductFilters) -> QuerySet[ProductReadModel]:
    products = ProductReadModel.objects.using(READ_DB).filter(is_active=True)
    if filters.seller_id is not None:
        products = products.filter(seller_id=filters.seller_id)
    if filters.min_rating is not None:
        products = products.filter(avg_rating__gte=filters.min_rating)
    if filters.max_price is not None:
        products = products.filter(price__lte=filters.max_price)
    if filters.in_stock is True:
        products = products.exclude(stock_status=StockStatus.OUT_OF_STOCK)
    elif filters.in_stock is False:
        products = products.filter(stock_status=StockStatus.OUT_OF_STOCK)
    if filters.search:
        products = products.filter(name__icontains=filters.search)
    return products


def _cursor_for(ordering: str, product: ProductReadModel, *, backwards: bool) -> Cursor:
    value = getattr(product, ORDERINGS[ordering].field)
    return Cursor(ordering, value, product.product_id, backwards)


def product_list(
    *,
    filters: ProductFilters,
    ordering: str = DEFAULT_ORDERING,
    cursor: Cursor | None = None,
    page_size: int = 20,
) -> ProductPage:
    """One page of active products: one query on ``read``.

    ``ordering`` must be a key of ``ORDERINGS`` and ``cursor`` one made for it.
    """
    order = ORDERINGS[ordering]
    backwards = cursor is not None and cursor.backwards
    walk = order.reversed() if backwards else order
    products = _filtered(filters).only(*LIST_FIELDS).order_by(*walk.order_by())
    if cursor is not None:
        products = products.filter(walk.after(cursor.value, cursor.product_id))
    rows = list(products[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    if backwards:
        rows.reverse()
    if not rows:
        return ProductPage([], None, None)
    # Going back, the rows after the page are where the cursor came from.
    has_next, has_previous = (True, more) if backwards else (more, cursor is not None)
    return ProductPage(
        products=rows,
        next_cursor=_cursor_for(ordering, rows[-1], backwards=False) if has_next else None,
        previous_cursor=_cursor_for(ordering, rows[0], backwards=True) if has_previous else None,
    )


Converters = tuple[int, tuple[list[Any], Any]]


VERSION_FIELDS = ("last_position", "updated_at")


@dataclasses.dataclass(frozen=True)
class RowVersion:
    """A read-model row's key and version: ``(last_position, updated_at)``
    changes with every write of the row, so it names the row's content."""

    key: int
    last_position: int
    updated_at: datetime.datetime

    @classmethod
    def of(cls, row: ProductReadModel | SellerReadModel) -> "RowVersion":
        return cls(row.pk, row.last_position, row.updated_at)

    @property
    def parts(self) -> tuple[object, ...]:
        return (self.key, self.last_position, self.updated_at.isoformat())


class PrimaryKeyReader[M: Model]:
    """Reads one row of a read model by primary key, with the SQL compiled once.

    The detail endpoints are the hot path, and compiling the ORM query costs
    several times more than running it. The SQL and the value converters come
    from the ORM itself, so the instance is the one ``get(pk=...)`` returns.
    """

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.field_names = [field.attname for field in model._meta.concrete_fields]
        self._compiled: dict[tuple[str, str], tuple[str, list[Converters], list[Converters]]] = {}
        self._version_compiled: dict[tuple[str, str], tuple[str, list[Converters]]] = {}

    def _compile(self) -> tuple[str, list[Converters], list[Converters]]:
        compiler = (
            self.model._default_manager.using(READ_DB)
            .filter(pk=0)
            .query.get_compiler(using=READ_DB)
        )
        sql, _ = compiler.as_sql()
        columns = [column for column, _, _ in compiler.select]
        assert [column.target.attname for column in columns] == self.field_names
        converters = list(compiler.get_converters(columns).items())
        # Both backends hand JSON columns over as text; these leave it so.
        json_kept = [
            converter
            for converter in converters
            if not isinstance(converter[1][1].target, JSONField)
        ]
        return sql, converters, json_kept

    def get(self, pk: int, *, json_as_text: bool = False) -> M | None:
        """The row, or None. With ``json_as_text`` its JSON fields hold the
        stored JSON text instead of the decoded values."""
        sql, decoding, json_kept = self._for_this_database(self._compiled, self._compile)
        values = self._fetch(sql, pk, json_kept if json_as_text else decoding)
        if values is None:
            return None
        return self.model.from_db(READ_DB, self.field_names, values)

    def version(self, pk: int) -> RowVersion | None:
        """The row's version, which names its content exactly, or None: a
        query of two narrow columns, for answers cached by version."""
        sql, decoding = self._for_this_database(self._version_compiled, self._compile_version)
        values = self._fetch(sql, pk, decoding)
        if values is None:
            return None
        return RowVersion(pk, values[0], values[1])

    @staticmethod
    def _for_this_database[C](compiled: dict[tuple[str, str], C], compile: Callable[[], C]) -> C:
        """What ``compile`` made for the read database in use (tests swap it)."""
        connection = connections[READ_DB]
        key = (connection.vendor, connection.settings_dict["NAME"])
        if key not in compiled:
            compiled[key] = compile()
        return compiled[key]

    @staticmethod
    def _fetch(sql: str, pk: int, converters: list[Converters]) -> list[Any] | None:
        """The row's values as ``converters`` make them, or None."""
        connection = connections[READ_DB]
        with connection.cursor() as cursor:
            cursor.execute(sql, [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row)
        for position, (functions, expression) in converters:
            for convert in functions:
                values[position] = convert(values[position], expression, connection)
        return values

    def _compile_version(self) -> tuple[str, list[Converters]]:
        compiler = (
            self.model._default_manager.using(READ_DB)
            .filter(pk=0)
            .values_list(*VERSION_FIELDS)
            .query.get_compiler(using=READ_DB)
        )
        sql, _ = compiler.as_sql()
        columns = [column for column, _, _ in compiler.select]
        return sql, list(compiler.get_converters(columns).items())


_products = PrimaryKeyReader(ProductReadModel)
_sellers = PrimaryKeyReader(SellerReadModel)


def product_get(*, product_id: int, json_as_text: bool = False) -> ProductReadModel | None:
    """The whole read-model row, active or not: one query on ``read``.

    ``json_as_text`` leaves the JSON fields as the stored JSON text, for a
    caller that copies them into a JSON answer without parsing them.
    """
    if not 0 < product_id <= MAX_ID:
        return None
    return _products.get(product_id, json_as_text=json_as_text)


def product_version(*, product_id: int) -> RowVersion | None:
    """The product row's version alone (``RowVersion``), or None."""
    if not 0 < product_id <= MAX_ID:
        return None
    return _products.version(product_id)


def seller_version(*, seller_id: int) -> RowVersion | None:
    if not 0 < seller_id <= MAX_ID:
        return None
    return _sellers.version(seller_id)


def seller_get(*, seller_id: int) -> SellerReadModel | None:
    if not 0 < seller_id <= MAX_ID:
        return None
    return _sellers.get(seller_id)


def seller_choices(*, limit: int = 500) -> list[tuple[int, str]]:
    """Sellers by name, for a filter menu."""
    return list(
        SellerReadModel.objects.using(READ_DB)
        .order_by("name", "seller_id")
        .values_list("seller_id", "name")[:limit]
    )
