"""Reviews on the write side. Only services write them."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Length, Now
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual

MIN_BODY = 10
MAX_BODY = 5000
MAX_TITLE = 120


class Review(models.Model):
    # PROTECT: a review leaves only through a command that records its event
    # (``reviews.services``; a user goes with ``user_erase``), never by cascade.
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="reviews")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews"
    )
    rating = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=MAX_TITLE, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(db_default=Now())
    edited_at = models.DateTimeField(null=True, blank=True)
    is_hidden = models.BooleanField(default=False)
    hidden_at = models.DateTimeField(null=True, blank=True)
    # Not in any event or read model: clearing it when the moderator goes is silent and right.
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        indexes = [models.Index(fields=["product", "-created_at", "-id"])]
        constraints = [
            models.UniqueConstraint(fields=["product", "author"], name="one_review_per_author"),
            models.CheckConstraint(
                condition=models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    GreaterThanOrEqual(Length("body"), MIN_BODY),
                    LessThanOrEqual(Length("body"), MAX_BODY),
                ),
                name="review_body_length",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rating}★ by {self.author_id} on {self.product_id}"
