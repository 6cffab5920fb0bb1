"""Operations in the admin, staff only: projector status, parked events, rebuilds.

Everything here reads the read database; the only writes are the engine's
own retry and skip of a parked event, which need the
``projections.resolve_parkedevent`` permission besides staff status.
"""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from projections.engine import retry_parked, skip_parked
from projections.models import Checkpoint, ParkedEvent, RebuildRun
from projections.status import partition_statuses


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Checkpoint)
class ProjectorStatusAdmin(ReadOnlyAdmin):
    """The change list is the projector status page: lag in events and seconds."""

    def get_urls(self) -> list[Any]:
        status = self.admin_site.admin_view(self.status_view)
        return [path("", status, name="projections_checkpoint_changelist"), *super().get_urls()]

    def status_view(self, request: HttpRequest) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Projector status",
            "opts": self.model._meta,
            "statuses": partition_statuses(),
            "last_rebuild": RebuildRun.objects.order_by("-pk").first(),
        }
        return TemplateResponse(request, "admin/projections/status.html", context)


@admin.register(ParkedEvent)
class ParkedEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "projector",
        "partition",
        "position",
        "event_type",
        "attempts",
        "status",
        "parked_at",
        "error",
    )
    list_filter = ("status", "projector", "event_type")
    readonly_fields = (
        "projector",
        "partition",
        "position",
        "transaction_id",
        "event_type",
        "payload",
        "error",
        "traceback",
        "attempts",
        "status",
        "parked_at",
        "resolved_at",
    )
    actions = ("retry", "skip")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.resolve_parkedevent")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A staff member without the permission sees no actions; one who posts
        an action anyway gets 403, not the list again as if nothing was asked."""
        if (
            request.method == "POST"
            and "action" in request.POST
            and not self.has_resolve_permission(request)
        ):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    @admin.action(permissions=["resolve"], description="Retry the selected parked events")
    def retry(self, request: HttpRequest, queryset: QuerySet[ParkedEvent]) -> None:
        for parked in queryset.filter(status=ParkedEvent.Status.PARKED):
            retry_parked(parked.pk)
            self.message_user(request, f"{parked}: its partition will try it again.")

    @admin.action(
        permissions=["resolve"], description="Skip the selected parked events (never apply them)"
    )
    def skip(self, request: HttpRequest, queryset: QuerySet[ParkedEvent]) -> None:
        for parked in queryset.filter(status=ParkedEvent.Status.PARKED):
            skip_parked(parked.pk)
            self.message_user(
                request, f"{parked}: skipped; its partition goes on.", messages.WARNING
            )


@admin.register(RebuildRun)
class RebuildRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "mode", "phase", "rows", "events", "started_at", "finished_at", "message")
    list_filter = ("phase", "mode")
