"""Consistency tokens: a log position signed by this server.

A command answers with the position of its last event as a token, signed with
the secret key and the moment it was issued (Django's ``TimestampSigner``), so
a query that sends it back can wait for exactly that position, and a token no
command of this server issued is recognised as such.
"""

from django.conf import settings
from django.core import signing

from eventstore.eventlog import LogPosition

TOKEN_SALT = "storefront.consistency-token"  # noqa: S105 (a namespace, not a secret)
TOKEN_SEPARATOR = "."  # noqa: S105


class InvalidToken(ValueError):
    """Not a consistency token this server issued."""


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=TOKEN_SALT, sep=TOKEN_SEPARATOR)


def issue_token(position: LogPosition) -> str:
    """The token a command answers with: its last event's position, signed."""
    return _signer().sign(position.token())


def read_token(raw: str) -> tuple[LogPosition, bool]:
    """The position a token names and whether it is still fresh enough to wait for.

    Raises ``InvalidToken`` unless this server issued it (with its current
    secret key or one of ``SECRET_KEY_FALLBACKS``).
    """
    signer = _signer()
    fresh = True
    try:
        value = signer.unsign(raw, max_age=settings.CONSISTENCY_TOKEN_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        fresh = False
        value = _unsigned(signer, raw)
    except signing.BadSignature:
        raise InvalidToken(raw) from None
    try:
        return LogPosition.from_token(value), fresh
    except ValueError:
        raise InvalidToken(raw) from None


def _unsigned(signer: signing.TimestampSigner, raw: str) -> str:
    try:
        return signer.unsign(raw)
    except signing.BadSignature:
        raise InvalidToken(raw) from None
