"""Catalog management. Every save is a command from ``catalog.services``.

The forms run the same checks as the services in ``clean``, so a change the
domain refuses comes back as a field error before anything is written. A
command refused at save time all the same (a concurrent writer took the slug
in between) raises out of the admin's request transaction, which rolls back
every row and event of the request, and comes back as an error message.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.core.exceptions import ValidationError
from django.db.models import Count, Model, QuerySet
from django.forms.formsets import BaseFormSet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from catalog import services
from catalog.models import PriceChange, Product, Recommendation, Seller
from catalog.validation import (
    MAX_RECOMMENDATIONS,
    clean_description,
    clean_name,
    clean_price,
    clean_quantity,
    clean_related_ids,
    clean_reputation,
    clean_slug,
)
from kernel.errors import DomainError

PRODUCT_DETAIL_FIELDS = frozenset({"name", "slug", "description", "is_active"})
UNRANKED = 1_000


class DomainCheckedForm(forms.ModelForm):
    """A model form that also runs the domain's own check of each field."""

    domain_checks: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        for name, check in self.domain_checks.items():
            if name not in cleaned:
                continue
            try:
                cleaned[name] = check(cleaned[name])
            except DomainError as refused:
                self.add_error(name, refused.message)
        return cleaned


class CommandAdmin(admin.ModelAdmin):
    """An admin whose ``save_model`` calls services; nothing is deleted here."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as refused:
            self.message_user(request, f"Nothing was saved: {refused.message}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


def adopt(form_instance: Model, saved: Model) -> None:
    """Make the admin's unsaved form instance the row a service created."""
    form_instance.pk = saved.pk
    form_instance.refresh_from_db()
    form_instance._state.adding = False


class SellerForm(DomainCheckedForm):
    domain_checks = {"name": clean_name, "reputation": clean_reputation}

    class Meta:
        model = Seller
        fields = ("name", "reputation")


@admin.register(Seller)
class SellerAdmin(CommandAdmin):
    form = SellerForm
    list_display = ("name", "reputation", "product_count", "created_at")
    search_fields = ("name",)
    ordering = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Seller]:
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @admin.display(ordering="product_count", description="products")
    def product_count(self, seller: Any) -> int:
        return int(seller.product_count)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A seller's name is set when they register; no command renames one.
        return ("name", "created_at") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Seller, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            adopt(obj, services.seller_register(name=data["name"], reputation=data["reputation"]))
        elif "reputation" in form.changed_data:
            services.seller_change_reputation(seller_id=obj.pk, reputation=data["reputation"])


class ProductForm(DomainCheckedForm):
    domain_checks = {
        "name": clean_name,
        "slug": clean_slug,
        "description": clean_description,
        "price": clean_price,
        "stock_quantity": clean_quantity,
    }

    class Meta:
        model = Product
        fields = ("seller", "name", "slug", "description", "price", "stock_quantity", "is_active")


class PriceHistoryInline(admin.TabularInline):
    model = PriceChange
    fields = readonly_fields = ("price", "changed_at")
    ordering = ("-changed_at", "-id")
    extra = 0
    can_delete = False
    verbose_name_plural = "price history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecommendationForm(forms.ModelForm):
    rank = forms.IntegerField(
        required=False, min_value=0, max_value=999, help_text="Lower comes first."
    )

    class Meta:
        model = Recommendation
        fields = ("related", "rank")

    def validate_unique(self) -> None:
        """Skipped: the list is replaced as a whole, so today's rows do not clash."""

    def validate_constraints(self) -> None:
        """Skipped for the same reason; the formset checks the list instead."""


def _rank(form: forms.BaseForm) -> int:
    rank = form.cleaned_data.get("rank")
    return UNRANKED if rank is None else int(rank)


class RecommendationFormSet(BaseInlineFormSet):
    def ordered_related_ids(self) -> list[int]:
        """The related products by rank; unranked rows last, in the order shown."""
        kept = [
            form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        return [form.cleaned_data["related"].pk for form in sorted(kept, key=_rank)]

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        try:
            clean_related_ids(self.instance.pk or 0, self.ordered_related_ids())
        except DomainError as refused:
            raise ValidationError(refused.message) from None


class RecommendationInline(admin.TabularInline):
    model = Recommendation
    fk_name = "product"
    form = RecommendationForm
    formset = RecommendationFormSet
    autocomplete_fields = ("related",)
    ordering = ("rank",)
    extra = 3
    max_num = MAX_RECOMMENDATIONS
    verbose_name = "recommendation"
    verbose_name_plural = "customers who bought this also bought"


@admin.register(Product)
class ProductAdmin(CommandAdmin):
    form = ProductForm
    list_display = ("name", "seller", "price", "stock_quantity", "is_active", "updated_at")
    list_filter = ("is_active", "seller")
    list_select_related = ("seller",)
    search_fields = ("name", "slug")
    ordering = ("name",)
    autocomplete_fields = ("seller",)
    prepopulated_fields = {"slug": ("name",)}
    actions = ("put_on_sale", "take_off_sale")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # No command moves a product to another seller.
        return ("seller", "created_at", "updated_at") if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[InlineModelAdmin]]:
        if obj is None:
            return [RecommendationInline]
        return [RecommendationInline, PriceHistoryInline]

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = services.product_create(
                seller_id=data["seller"].pk,
                name=data["name"],
                slug=data["slug"],
                description=data["description"],
                price=data["price"],
                stock_quantity=data["stock_quantity"],
                is_active=data["is_active"],
            )
            adopt(obj, created)
            return
        changed = set(form.changed_data)
        if changed & PRODUCT_DETAIL_FIELDS:
            services.product_change_details(
                product_id=obj.pk,
                name=data["name"],
                slug=data["slug"],
                description=data["description"],
                is_active=data["is_active"],
            )
        if "price" in changed:
            services.product_change_price(product_id=obj.pk, price=data["price"])
        if "stock_quantity" in changed:
            services.product_change_stock(product_id=obj.pk, quantity=data["stock_quantity"])

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        for formset in formsets:
            if isinstance(formset, RecommendationFormSet) and formset.has_changed():
                services.product_set_recommendations(
                    product_id=form.instance.pk, related_ids=formset.ordered_related_ids()
                )

    def construct_change_message(
        self,
        request: HttpRequest,
        form: forms.Form,
        formsets: "Iterable[BaseFormSet[Any]]",
        add: bool = False,
    ) -> list[dict[str, dict[str, list[str]]]]:
        """The form's changes; the formsets were not saved, so they are summed up."""
        message = super().construct_change_message(request, form, [], add)
        if any(formset.has_changed() for formset in formsets):
            message.append({"changed": {"fields": ["recommendations"]}})
        return message

    @admin.action(description="Put selected products on sale", permissions=["change"])
    def put_on_sale(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, is_active=True)

    @admin.action(description="Take selected products off sale", permissions=["change"])
    def take_off_sale(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, is_active=False)

    def _set_active(
        self, request: HttpRequest, queryset: QuerySet[Product], *, is_active: bool
    ) -> None:
        product_ids = list(queryset.exclude(is_active=is_active).values_list("pk", flat=True))
        for product_id in product_ids:
            services.product_change_details(product_id=product_id, is_active=is_active)
        state = "on sale" if is_active else "off sale"
        self.message_user(request, f"{len(product_ids)} product(s) now {state}.", messages.SUCCESS)
