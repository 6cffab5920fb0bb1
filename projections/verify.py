"""Compare every read-model row with the truth computed from the write model.

Run on a live system it also finds the rows whose latest events a projector
has not applied yet; ``projections.repair`` (``--fix``) is exact either way.
"""

import dataclasses
import random
from typing import Any

from projections import expected as truth


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
