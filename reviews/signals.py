"""Review events. They are sent through ``catalog.signals.domain_event``."""

import dataclasses
from datetime import datetime
from typing import ClassVar

from catalog.signals import DomainEvent


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReviewEvent(DomainEvent):
    stream_type: ClassVar[str] = "review"
    review_id: int
    product_id: int

    @property
    def stream_id(self) -> int:
        return self.review_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReviewAdded(ReviewEvent):
    """Version 2 added ``title``; ``projections.upcasting`` gives version 1 an empty one."""

    event_type: ClassVar[str] = "ReviewAdded"
    version: ClassVar[int] = 2
    author_id: int
    author_name: str
    rating: int
    title: str
    body: str
    created_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReviewEdited(ReviewEvent):
    event_type: ClassVar[str] = "ReviewEdited"
    rating: int
    previous_rating: int
    body: str
    edited_at: datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReviewRemoved(ReviewEvent):
    """The review no longer counts: its author deleted it, staff hid it, or
    its author was erased (``user_erase``)."""

    event_type: ClassVar[str] = "ReviewRemoved"
    rating: int
    reason: str  # "author", "moderation" or "erasure"
    counted: bool = True  # False when an author deletes a review staff had hidden
