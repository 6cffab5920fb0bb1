"""Review commands over HTTP: authors add, edit and remove their own reviews."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from kernel.http import CONSISTENCY_HELP, CommandView, answer_headers, error_responses, run_command
from reviews import services


class ReviewCommandResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The review id.")
    consistency_token = serializers.CharField(help_text=CONSISTENCY_HELP)


class ReviewAddSerializer(serializers.Serializer):
    product = serializers.IntegerField(help_text="The product id.")
    rating = serializers.IntegerField(help_text="1 to 5 stars.")
    title = serializers.CharField(
        required=False, allow_blank=True, help_text="Optional, up to 120 characters."
    )
    body = serializers.CharField(
        allow_blank=True, trim_whitespace=False, help_text="10 to 5,000 characters."
    )


class ReviewAddResultSerializer(ReviewCommandResultSerializer):
    product = serializers.IntegerField()


class ReviewEditSerializer(serializers.Serializer):
    rating = serializers.IntegerField(required=False, help_text="1 to 5 stars.")
    body = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="10 to 5,000 characters.",
    )


def _review_id_parameter() -> OpenApiParameter:
    return OpenApiParameter("review_id", int, OpenApiParameter.PATH, description="The review id.")


class ReviewCreateView(CommandView):
    throttle_scope = "reviews"

    @extend_schema(
        operation_id="reviews_create",
        summary="Review a product",
        description="One review per author and product. Throttled per user.",
        parameters=answer_headers(throttled=True),
        request=ReviewAddSerializer,
        responses={
            201: OpenApiResponse(ReviewAddResultSerializer, description="Created."),
            **error_responses(400, 401, 404, 409, 413, 415, 429),
        },
        tags=["commands"],
    )
    def post(self, request: Request) -> Response:
        given = ReviewAddSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        review, token = run_command(
            lambda: services.review_add(
                product_id=data["product"],
                author=request.user,
                rating=data["rating"],
                title=data.get("title", ""),
                body=data["body"],
            )
        )
        body = {"id": review.pk, "product": review.product_id, "consistency_token": token}
        return Response(ReviewAddResultSerializer(body).data, status=status.HTTP_201_CREATED)


class ReviewDetailView(CommandView):
    http_method_names = ["patch", "delete", "options"]

    @extend_schema(
        operation_id="reviews_edit",
        summary="Edit your review",
        description="Give a new rating, a new text, or both. Only the author may edit.",
        parameters=[_review_id_parameter(), *answer_headers(throttled=True)],
        request=ReviewEditSerializer,
        responses={
            202: OpenApiResponse(ReviewCommandResultSerializer, description="Accepted."),
            **error_responses(400, 401, 403, 404, 409, 413, 415, 429),
        },
        tags=["commands"],
    )
    def patch(self, request: Request, review_id: int) -> Response:
        given = ReviewEditSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        review, token = run_command(
            lambda: services.review_edit(
                review_id=review_id,
                author=request.user,
                rating=data.get("rating"),
                body=data.get("body"),
            )
        )
        body = {"id": review.pk, "consistency_token": token}
        return Response(ReviewCommandResultSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="reviews_remove",
        summary="Remove your review",
        description="Only the author may remove a review; they may write a new one afterwards.",
        parameters=[_review_id_parameter(), *answer_headers(throttled=True)],
        request=None,
        responses={
            202: OpenApiResponse(ReviewCommandResultSerializer, description="Accepted."),
            **error_responses(401, 403, 404, 429),
        },
        tags=["commands"],
    )
    def delete(self, request: Request, review_id: int) -> Response:
        _, token = run_command(
            lambda: services.review_remove(review_id=review_id, author=request.user)
        )
        body = {"id": review_id, "consistency_token": token}
        return Response(ReviewCommandResultSerializer(body).data, status=status.HTTP_202_ACCEPTED)
