"""Review moderation. Staff read every review and hide the ones that break the
rules, through ``reviews.services.review_hide``; reviews are written, edited
and removed by their authors on the site, never here.

Also Django's user pages, whose delete erases the user through
``reviews.services.user_erase``: reviews are all the write side keeps of a
user, and a plain delete would be refused (``Review.author`` is PROTECT).
"""

import contextlib
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import NestedObjects
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.db import router
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars

from eventstore.recording import command_transaction
from kernel.errors import DomainError, NotFound
from reviews.models import Review
from reviews.services import review_hide, user_erase

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


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin):  # type: ignore[type-arg]
    """Deleting a user here erases them (``user_erase``), one at a time or
    selected; the confirmation page lists their reviews as removed with
    their events, not as vanishing with the user."""

    def get_deleted_objects(
        self, objs: Iterable[Model], request: HttpRequest
    ) -> tuple[list[Any], dict[Any, int], set[Any], list[Any]]:
        objs = list(objs)
        deleted: list[Any]
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        collector = NestedObjects(using=router.db_for_write(User))
        collector.collect(objs)
        if any(not isinstance(obj, Review) for obj in collector.protected):
            return deleted, counts, perms_needed, protected  # something else forbids it
        reviews = Review.objects.filter(author__in=[obj.pk for obj in objs])
        erased = [
            f"Review {review.pk} of “{review.product}” ({review.rating}★"
            f"{', hidden' if review.is_hidden else ''})"
            for review in reviews.select_related("product").order_by("pk")
        ]
        if erased:
            perms_needed.discard(Review._meta.verbose_name)
            counts["reviews, each removed with its ReviewRemoved event"] = len(erased)
            line = (
                f"{len(erased)} review(s), each removed with its own ReviewRemoved event "
                "(the product pages stop counting it); their text and the author's name "
                "are redacted in the event log"
            )
            deleted = [*deleted, line, erased]  # a nested list: the line, then its items
        return deleted, counts, perms_needed, []

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            # Announced before the admin's own first write (its history entry).
            with command_transaction():
                return super().delete_view(request, object_id, extra_context)
        except DomainError as refused:  # its transaction rolled back: nothing was erased
            self.message_user(request, f"Not erased: {refused.message}", messages.ERROR)
            return HttpResponseRedirect(request.path)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with contextlib.suppress(NotFound):  # erased meanwhile, by another request
            user_erase(user_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        refusals = []
        for user_id in queryset.values_list("pk", flat=True):
            try:
                user_erase(user_id=user_id)
            except NotFound:
                pass  # erased meanwhile, by another request
            except DomainError as refused:
                refusals.append(f"user #{user_id}: {refused.message}")
        if refusals:
            self.message_user(request, "Not erased: " + "; ".join(refusals), messages.ERROR)
