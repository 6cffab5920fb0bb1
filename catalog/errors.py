"""The domain's errors. The API and the forms turn them into 4xx and field errors."""


class DomainError(Exception):
    """A command was refused; nothing was written."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """The command's input breaks a business rule (a 400)."""


class NotFound(DomainError):
    """The command names something that does not exist (a 404)."""


class Conflict(DomainError):
    """The command clashes with the current state (a 409)."""


class NotAllowed(DomainError):
    """The actor may not do this (a 403)."""


class EventOutsideTransaction(RuntimeError):
    """A domain signal was sent with no transaction open on the write database."""


RATING_OUT_OF_RANGE = "Rating must be a whole number from 1 to 5."
BODY_LENGTH = "Review text must be 10 to 5,000 characters."
TITLE_LENGTH = "A review title must be at most 120 characters."
TEXT_HAS_NUL = "Text must not contain NUL characters."
REVIEW_EXISTS = "You have already reviewed this product."
REVIEW_NOT_FOUND = "No such review."
REVIEW_NOT_YOURS = "Only the author may change this review."
PRODUCT_NOT_FOUND = "No such product."
PRODUCT_INACTIVE = "This product is not on sale."
SELLER_NOT_FOUND = "No such seller."
PRICE_INVALID = "Price must be a positive amount with at most 2 decimal places, below 100,000,000."
QUANTITY_INVALID = "Stock quantity must be a whole number from 0 to 2,147,483,647."
REPUTATION_INVALID = "Reputation must be from 0.00 to 5.00 with at most 2 decimal places."
NAME_INVALID = "Name must be 1 to 200 characters."
SLUG_TAKEN = "Another product already has this slug."
SLUG_INVALID = "Slug must be 1 to 220 letters, digits, hyphens or underscores."
RECOMMENDATION_INVALID = "Recommendations must be up to 20 distinct other existing products."
NOT_STAFF = "Only staff may do this."
CHANGED_MEANWHILE = "Something this command refers to changed meanwhile; nothing was written."
USER_NOT_FOUND = "No such user."
USER_BUSY = "The user's reviews kept changing while they were being erased; try again."
