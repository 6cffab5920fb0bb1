"""The reviews' events, and the upcasters of their older versions."""

import dataclasses
from datetime import datetime
from typing import ClassVar

from eventstore.events import DomainEvent
from eventstore.upcasting import Payload, upcaster


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
    """Version 2 added ``title``; version 1 is read with an empty one
    (``review_added_gains_a_title``)."""

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


@upcaster("ReviewAdded", from_version=1)
def review_added_gains_a_title(payload: Payload) -> Payload:
    """Version 2 of ReviewAdded carries the review's title; older reviews had none."""
    payload.setdefault("title", "")
    return payload
