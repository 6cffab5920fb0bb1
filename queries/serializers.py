"""Serializers of the query API: the query parameters in, the read models out.

They only read: nothing here saves. The product detail is the hot path, so
its serializer builds the response from the row by hand and passes the
row's JSON lists through as the projector shaped them; its declared fields
are the schema, and the API tests check every answer against that schema.
"""

import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from projections.models import ProductReadModel, StockStatus
from queries.selectors import MAX_ID, ORDERING_LABELS, ProductFilters

# What the list's decimal filters take, as patterns for the OpenAPI document:
# a rating from 0 to 5 and a price from 0 with at most 10 whole digits, each
# with at most 2 decimal places (the fields below refuse anything else).
RATING_PATTERN = r"^(?:[0-4](?:\.[0-9]{0,2})?|[0-4]?\.[0-9]{1,2}|5(?:\.0{0,2})?)$"
PRICE_PATTERN = r"^(?:[0-9]{1,10}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$"
# Text a query parameter may hold: no NUL (DRF's CharField refuses it).
NO_NUL_PATTERN = r"^[^\u0000]*$"
SEARCH_MAX_LENGTH = 200


@extend_schema_field({"type": "string", "format": "decimal", "pattern": RATING_PATTERN})
class RatingField(serializers.DecimalField):
    pass


@extend_schema_field({"type": "string", "format": "decimal", "pattern": PRICE_PATTERN})
class PriceField(serializers.DecimalField):
    pass


class ProductListQuerySerializer(serializers.Serializer):
    """The filters and the ordering of ``GET /api/products/``."""

    seller = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this seller's products."
    )
    min_rating = RatingField(
        required=False,
        max_digits=3,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=Decimal(5),
        help_text="Only products rated at least this (0 to 5); unrated products are left out.",
    )
    max_price = PriceField(
        required=False,
        max_digits=12,
        decimal_places=2,
        min_value=Decimal(0),
        help_text="Only products that cost at most this.",
    )
    in_stock = serializers.BooleanField(
        required=False,
        help_text="`true`: in stock or low stock; `false`: out of stock only.",
    )
    search = serializers.CharField(
        required=False,
        max_length=SEARCH_MAX_LENGTH,
        allow_blank=True,
        help_text="Only products whose name contains this text (case-insensitive).",
    )
    ordering = serializers.ChoiceField(
        required=False,
        choices=list(ORDERING_LABELS.items()),
        default="name",
        help_text="Sort order; a leading `-` sorts descending. Ties go by product id. "
        "Unrated products come last in `-avg_rating`.",
    )

    def filters(self) -> ProductFilters:
        data = self.validated_data
        return ProductFilters(
            seller_id=data.get("seller"),
            min_rating=data.get("min_rating"),
            max_price=data.get("max_price"),
            in_stock=data.get("in_stock"),
            search=data.get("search", "").strip(),
        )


FILTER_NAMES = ("seller", "min_rating", "max_price", "in_stock", "search", "ordering")
PAGE_NAMES = ("cursor", "page_size")


def query_data(query_params: Any, names: Iterable[str]) -> dict[str, str]:
    """The last value of each named parameter, empty ones left out as if absent."""
    data: dict[str, str] = {}
    for name in names:
        value = query_params.get(name)
        if value not in (None, ""):
            data[name] = value
    return data


class PageQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, max_length=600)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _datetime(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class SellerSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    reputation = serializers.DecimalField(max_digits=3, decimal_places=2)


class ProductListItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="product_id")
    name = serializers.CharField()
    slug = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    currency = serializers.CharField(help_text="ISO 4217 code.")
    stock_quantity = serializers.IntegerField()
    stock_status = serializers.ChoiceField(choices=StockStatus.choices)
    avg_rating = serializers.DecimalField(
        max_digits=3, decimal_places=2, allow_null=True, help_text="Null until reviewed."
    )
    review_count = serializers.IntegerField()
    seller = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(SellerSummarySerializer)
    def get_seller(self, row: ProductReadModel) -> dict[str, Any]:
        return {
            "id": row.seller_id,
            "name": row.seller_name,
            "reputation": _decimal(row.seller_reputation),
        }


class RelatedProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    avg_rating = serializers.DecimalField(max_digits=3, decimal_places=2, allow_null=True)


class PricePointSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The price change id.")
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    changed_at = serializers.DateTimeField()


class RecentReviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.CharField(help_text="The author's username.")
    rating = serializers.IntegerField(min_value=1, max_value=5)
    title = serializers.CharField(allow_blank=True, help_text="Empty for untitled reviews.")
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)


class ProductDetailSerializer(serializers.Serializer):
    """The whole product read-model row (without its partition number)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    is_active = serializers.BooleanField(help_text="False: no longer on sale.")
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    currency = serializers.CharField(help_text="ISO 4217 code.")
    stock_quantity = serializers.IntegerField()
    stock_status = serializers.ChoiceField(choices=StockStatus.choices)
    avg_rating = serializers.DecimalField(
        max_digits=3, decimal_places=2, allow_null=True, help_text="Null until reviewed."
    )
    review_count = serializers.IntegerField()
    rating_sum = serializers.IntegerField(help_text="Sum of the counted ratings.")
    rating_histogram = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        min_length=5,
        max_length=5,
        help_text="How many reviews gave 1, 2, 3, 4 and 5 stars, in that order.",
    )
    seller = SellerSummarySerializer()
    related_products = RelatedProductSerializer(
        many=True, help_text='"Customers who bought this also bought", in order.'
    )
    price_history = PricePointSerializer(many=True, help_text="The last 30 prices, newest first.")
    recent_reviews = RecentReviewSerializer(
        many=True, help_text="The 5 most recent visible reviews, newest first."
    )
    last_position = serializers.IntegerField(
        help_text="Log position of the last event applied to this row."
    )
    updated_at = serializers.DateTimeField()

    STORED_JSON = ("rating_histogram", "related_products", "price_history", "recent_reviews")

    def to_representation(self, instance: ProductReadModel) -> dict[str, Any]:
        return {
            **self._scalars(instance),
            # Stored in their documented shape by the projector
            # (``projections.projectors.entries``).
            **{name: getattr(instance, name) for name in self.STORED_JSON},
        }

    def to_json(self, row: ProductReadModel) -> bytes:
        """The answer as JSON, for a row read with ``json_as_text``: the stored
        JSON lists are copied in without parsing them again."""
        head = json.dumps(self._scalars(row), ensure_ascii=False, separators=(",", ":"))
        lists = "".join(f',"{name}":{getattr(row, name)}' for name in self.STORED_JSON)
        return f"{head[:-1]}{lists}}}".encode()

    def _scalars(self, row: ProductReadModel) -> dict[str, Any]:
        return {
            "id": row.product_id,
            "name": row.name,
            "slug": row.slug,
            "description": row.description,
            "is_active": row.is_active,
            "price": _decimal(row.price),
            "currency": row.currency,
            "stock_quantity": row.stock_quantity,
            "stock_status": row.stock_status,
            "avg_rating": _decimal(row.avg_rating),
            "review_count": row.review_count,
            "rating_sum": row.rating_sum,
            "seller": {
                "id": row.seller_id,
                "name": row.seller_name,
                "reputation": _decimal(row.seller_reputation),
            },
            "last_position": row.last_position,
            "updated_at": _datetime(row.updated_at),
        }


class SellerSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="seller_id")
    name = serializers.CharField()
    reputation = serializers.DecimalField(max_digits=3, decimal_places=2)
    product_count = serializers.IntegerField(help_text="Products the seller has listed.")
    review_count = serializers.IntegerField()
    avg_rating = serializers.DecimalField(
        max_digits=3,
        decimal_places=2,
        allow_null=True,
        help_text="Average rating over all reviews of the seller's products; null until reviewed.",
    )
    last_position = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Field name (or `non_field_errors`) to its error messages.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"min_rating": ["Ensure this value is less than or equal to 5."]},
}
