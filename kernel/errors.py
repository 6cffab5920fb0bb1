"""The domain's errors: a command refused, nothing written. The API and the
forms turn them into 4xx answers and field errors."""


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


TEXT_HAS_NUL = "Text must not contain NUL characters."
NOT_STAFF = "Only staff may do this."
CHANGED_MEANWHILE = "Something this command refers to changed meanwhile; nothing was written."
PRODUCT_NOT_FOUND = "No such product."
PRODUCT_INACTIVE = "This product is not on sale."
