"""Review moderation. Staff read every review and hide the ones that break the
rules, through ``reviews.services.review_hide``; reviews are written, edited
and removed by their authors on the site, never here."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars

from catalog.errors import DomainError
from reviews.models import Review
from reviews.services import review_hide

BODY_PREVIEW = 80


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "product",
        "author",
        "rating",
        "body_preview",
        "is_hidden",
        "created_at",
        "edited_at",
    )
    list_display_links = ("id", "body_preview")
    list_filter = ("is_hidden", "rating", "created_at")
    list_select_related = ("product", "author")
    search_fields = ("body", "author__username", "product__name")
    ordering = ("-created_at", "-id")
    fields = readonly_fields = (
        "product",
        "author",
        "rating",
        "body",
        "created_at",
        "edited_at",
        "is_hidden",
        "hidden_at",
        "hidden_by",
    )
    actions = ("hide_selected",)

    @admin.display(description="review")
    def body_preview(self, review: Review) -> str:
        return truncatechars(review.body, BODY_PREVIEW)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_moderate_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_staff and user.has_perm("reviews.change_review"))

    @admin.action(
        description="Hide selected reviews",
        permissions=["moderate"],
        location=[admin.ActionLocation.CHANGE_LIST, admin.ActionLocation.CHANGE_FORM],
    )
    def hide_selected(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        hidden, refusals = 0, []
        for review_id in queryset.filter(is_hidden=False).values_list("pk", flat=True):
            try:
                review_hide(review_id=review_id, moderator=request.user)
            except DomainError as refused:
                refusals.append(f"review {review_id}: {refused.message}")
            else:
                hidden += 1
        self.message_user(request, f"{hidden} review(s) hidden.", messages.SUCCESS)
        if refusals:
            self.message_user(request, "Not hidden: " + "; ".join(refusals), messages.ERROR)
