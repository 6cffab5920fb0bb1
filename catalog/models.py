"""The normalized write model of the catalog. Only services write it."""

from decimal import Decimal

from django.db import models
from django.db.models.functions import Now

MAX_REPUTATION = Decimal("5.00")


class Seller(models.Model):
    name = models.CharField(max_length=200)
    reputation = models.DecimalField(max_digits=3, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reputation__gte=0, reputation__lte=MAX_REPUTATION),
                name="seller_reputation_0_to_5",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Product(models.Model):
    # Every foreign key of the write model is PROTECT: its rows are projected,
    # and a cascade would remove them without their events.
    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock_quantity = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="product_price_positive"),
            models.CheckConstraint(
                condition=models.Q(stock_quantity__gte=0), name="product_stock_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PriceChange(models.Model):
    """Append-only: one row per price the product has had, the first included."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="price_changes")
    price = models.DecimalField(max_digits=10, decimal_places=2)
    changed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["product", "-changed_at", "-id"])]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gt=0), name="price_change_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.price} from {self.changed_at:%Y-%m-%d %H:%M}"


class Recommendation(models.Model):
    """Ordered "customers who bought this also bought" links between products."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="recommendations")
    related = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    rank = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["product", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["product", "related"], name="recommendation_once"),
            models.UniqueConstraint(fields=["product", "rank"], name="recommendation_rank_once"),
            models.CheckConstraint(
                condition=~models.Q(product=models.F("related")), name="recommendation_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.rank + 1}: product {self.related_id}"
