"""Catalog commands over HTTP (staff with ``catalog.change_product``, as in the
admin): change a product's price or stock.

Command views call a service and nothing else. The service's domain errors
become 4xx answers; a refused command wrote nothing, no row and no event.
Each answer carries a ``consistency_token``: a query that sends it back waits
until the read model shows the change.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import services
from catalog.models import Product
from kernel.http import (
    CONSISTENCY_HELP,
    CommandView,
    PlainDecimalField,
    answer_headers,
    error_responses,
    run_command,
)


def product_id_parameter() -> OpenApiParameter:
    return OpenApiParameter("product_id", int, OpenApiParameter.PATH, description="The product id.")


class CanChangeProducts(BasePermission):
    message = "Changing products needs the catalog.change_product permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm("catalog.change_product")


class StaffCommandView(CommandView):
    """Staff with the catalog permission, as the admin asks of them."""

    permission_classes = (IsAuthenticated, IsAdminUser, CanChangeProducts)


class PriceChangeSerializer(serializers.Serializer):
    price = PlainDecimalField(
        max_digits=None,
        decimal_places=None,
        help_text="The new price: positive, at most 2 decimal places, below 100,000,000.",
    )


class PriceChangeResultSerializer(serializers.Serializer):
    product = serializers.IntegerField()
    price = serializers.DecimalField(max_digits=10, decimal_places=2)
    consistency_token = serializers.CharField(help_text=CONSISTENCY_HELP)


class StockChangeSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(
        help_text="The new stock quantity, from 0 to 2,147,483,647."
    )


class StockChangeResultSerializer(serializers.Serializer):
    product = serializers.IntegerField()
    quantity = serializers.IntegerField()
    consistency_token = serializers.CharField(help_text=CONSISTENCY_HELP)


class ProductChangeView(StaffCommandView):
    """One change to a product: the body through ``given``, the service in
    ``change``, the answer through ``answered``, with the consistency token."""

    given: type[serializers.Serializer]
    answered: type[serializers.Serializer]

    def change(self, product_id: int, data: dict[str, Any]) -> Product:
        raise NotImplementedError

    def answer(self, product: Product) -> dict[str, Any]:
        raise NotImplementedError

    def post(self, request: Request, product_id: int) -> Response:
        given = self.given(data=request.data)
        given.is_valid(raise_exception=True)
        product, token = run_command(lambda: self.change(product_id, given.validated_data))
        body = {"product": product.pk, **self.answer(product), "consistency_token": token}
        return Response(self.answered(body).data, status=status.HTTP_202_ACCEPTED)


def _change_schema(operation_id: str, summary: str, given: type, answered: type, done: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=f"{summary} (staff with catalog.change_product)",
        parameters=[product_id_parameter(), *answer_headers(throttled=True)],
        request=given,
        responses={
            202: OpenApiResponse(answered, description=done),
            **error_responses(400, 401, 403, 404, 413, 415, 429),
        },
        tags=["commands"],
    )


class ProductPriceView(ProductChangeView):
    given = PriceChangeSerializer
    answered = PriceChangeResultSerializer

    def change(self, product_id: int, data: dict[str, Any]) -> Product:
        return services.product_change_price(product_id=product_id, price=data["price"])

    def answer(self, product: Product) -> dict[str, Any]:
        return {"price": product.price}

    @_change_schema(
        "products_price_change",
        "Change a product's price",
        PriceChangeSerializer,
        PriceChangeResultSerializer,
        "Price changed.",
    )
    def post(self, request: Request, product_id: int) -> Response:
        return super().post(request, product_id)


class ProductStockView(ProductChangeView):
    given = StockChangeSerializer
    answered = StockChangeResultSerializer

    def change(self, product_id: int, data: dict[str, Any]) -> Product:
        return services.product_change_stock(product_id=product_id, quantity=data["quantity"])

    def answer(self, product: Product) -> dict[str, Any]:
        return {"quantity": product.stock_quantity}

    @_change_schema(
        "products_stock_change",
        "Change a product's stock quantity",
        StockChangeSerializer,
        StockChangeResultSerializer,
        "Stock changed.",
    )
    def post(self, request: Request, product_id: int) -> Response:
        return super().post(request, product_id)
