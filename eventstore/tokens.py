"""Consistency tokens: a log position signed by this server.

A command answers with the position of its last event as a token, signed with
the secret key and the moment it was issued (Django's ``TimestampSigner``), so
a query that sends it back can wait for exactly that position, and a token no
command of this server issued is recognised as such.

The token also names the keys its events named (``PARTITION_KEY``: the
products they are about; ``SHOWN_KEYS``: those a row is made to show), when
there are a few: a partitioned projector has shown the write once the
partitions owning those keys have passed the position (an owner writes every
row that shows its product, in its own batch). A token without keys waits
for every partition. The signed value is ``<transaction id>-<position>``
followed by ``-<key>`` for each key.
"""

import dataclasses

from django.conf import settings
from django.core import signing

from eventstore.eventlog import MAX_TOKEN_KEYS, LogPosition

# A key is a product id: at most 19 digits, as a signed 64-bit integer.
_MAX_DIGITS = 19


@dataclasses.dataclass(frozen=True)
class Token:
    """What a consistency token says: the position to wait for, and the keys
    whose partitions must have passed it (None: every partition)."""

    position: LogPosition
    keys: frozenset[int] | None = None

    def value(self) -> str:
        keys = "".join(f"-{key}" for key in sorted(self.keys)) if self.keys else ""
        return self.position.token() + keys

    @classmethod
    def from_value(cls, value: str) -> "Token":
        """Parse a token's signed value; raises ValueError when it is not one."""
        parts = value.split("-")
        if not 2 <= len(parts) <= 2 + MAX_TOKEN_KEYS:
            raise ValueError("not a consistency token")
        if not all(part.isdigit() and part.isascii() for part in parts):
            raise ValueError("not a consistency token")
        if any(len(part) > _MAX_DIGITS + 1 for part in parts):
            raise ValueError("not a consistency token")
        position = LogPosition(int(parts[0]), int(parts[1]))
        keys = frozenset(int(part) for part in parts[2:]) or None
        return cls(position, keys)


TOKEN_SALT = "storefront.consistency-token"  # noqa: S105 (a namespace, not a secret)
TOKEN_SEPARATOR = "."  # noqa: S105


class InvalidToken(ValueError):
    """Not a consistency token this server issued."""


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=TOKEN_SALT, sep=TOKEN_SEPARATOR)


def issue_token(position: LogPosition, keys: "set[int] | frozenset[int] | None" = None) -> str:
    """The token a command answers with: its last event's position, and the
    keys its events named (``Token``), signed."""
    named = keys and len(keys) <= MAX_TOKEN_KEYS and min(keys) >= 0
    chosen = frozenset(keys) if keys and named else None
    return _signer().sign(Token(position, chosen).value())


def read_token(raw: str) -> tuple[Token, bool]:
    """What a token says and whether it is still fresh enough to wait for.

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
        return Token.from_value(value), fresh
    except ValueError:
        raise InvalidToken(raw) from None


def _unsigned(signer: signing.TimestampSigner, raw: str) -> str:
    try:
        return signer.unsign(raw)
    except signing.BadSignature:
        raise InvalidToken(raw) from None
