"""Compare every read-model row with the truth computed from the write model."""

import dataclasses
import random
from typing import Any

from django.db import transaction
from django.utils import timezone

from projections import truth
from projections.bulk import upsert
from projections.models import Checkpoint, ProductFacts, ProductReadModel, SellerReadModel


@dataclasses.dataclass
class Drift:
    model: str
    checked: int
    rows: dict[int, list[str]]
    expected: dict[int, dict[str, Any]]
    actual: dict[int, dict[str, Any]]

    def examples(self, limit: int = 5) -> list[str]:
        lines = []
        for pk, fields in list(self.rows.items())[:limit]:
            for field in fields[:3]:
                want = self.expected.get(pk, {}).get(field, "<no row>")
                got = self.actual.get(pk, {}).get(field, "<no row>")
                lines.append(f"{self.model} {pk} {field}: expected {want!r}, found {got!r}")
        return lines


def verify(*, sample: int | None = None, seed: int | None = None) -> list[Drift]:
    """Drift of the product and seller read models (every row, or a sample of products)."""
    product_ids = None
    if sample is not None:
        from catalog.models import Product

        every = list(Product.objects.values_list("pk", flat=True))
        product_ids = random.Random(seed).sample(every, min(sample, len(every)))  # noqa: S311
    expected_products = truth.expected_products(product_ids)
    actual_products = truth.actual_products(product_ids)
    expected_sellers = truth.expected_sellers()
    actual_sellers = truth.actual_sellers()
    return [
        Drift(
            "product",
            len(expected_products),
            truth.drift(expected_products, actual_products, truth.PRODUCT_FIELDS),
            expected_products,
            actual_products,
        ),
        Drift(
            "seller",
            len(expected_sellers),
            truth.drift(expected_sellers, actual_sellers, truth.SELLER_FIELDS),
            expected_sellers,
            actual_sellers,
        ),
    ]


def repair(drifts: list[Drift]) -> int:
    """Write the true rows, and the product facts that feed their fan-out,
    through the projectors' own bulk path. Returns the rows repaired."""
    repaired = 0
    now = timezone.now()
    with transaction.atomic(using="read"):
        for drift in drifts:
            ids = [pk for pk in drift.rows if pk in drift.expected]
            gone = [pk for pk in drift.rows if pk not in drift.expected]
            if drift.model == "product":
                _repair_products(ids, drift.expected, now)
                ProductReadModel.objects.filter(pk__in=gone).delete()
            else:
                _repair_sellers(ids, drift.expected, drift.actual, now)
                SellerReadModel.objects.filter(pk__in=gone).delete()
            repaired += len(drift.rows)
        # Projectors that keep rows between batches must load them again.
        Checkpoint.objects.update(updated_at=now)
    return repaired


def _repair_products(ids: list[int], expected: dict[int, dict[str, Any]], now: Any) -> None:
    fields = [f.name for f in ProductReadModel._meta.concrete_fields if not f.primary_key]
    current = {row.pk: row.last_position for row in ProductReadModel.objects.filter(pk__in=ids)}
    rows = [
        ProductReadModel(
            product_id=pk, last_position=current.get(pk, 0), updated_at=now, **expected[pk]
        )
        for pk in ids
    ]
    upsert(ProductReadModel, rows, conflict=["product_id"], update=fields)
    for facts in ProductFacts.objects.filter(product_id__in=ids):
        row = expected[facts.product_id]
        for field in ("seller_id", "name", "price", "is_active", "rating_sum", "review_count"):
            setattr(facts, field, row[field])
        facts.save()


def _repair_sellers(
    ids: list[int], expected: dict[int, dict[str, Any]], actual: dict[int, dict[str, Any]], now: Any
) -> None:
    fields = [f.name for f in SellerReadModel._meta.concrete_fields if not f.primary_key]
    rows = [
        SellerReadModel(
            seller_id=pk,
            last_position=(actual.get(pk) or {}).get("last_position", 0),
            updated_at=now,
            **expected[pk],
        )
        for pk in ids
    ]
    upsert(SellerReadModel, rows, conflict=["seller_id"], update=fields)
