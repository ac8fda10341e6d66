"""Who acts on the records: an identity from a sign-in (issuer, subject, display name) and its roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from components.records.errors import ValidationError
from components.screening.vocabulary import ROLES, UNAUTHENTICATED

__all__ = ["ROLES", "SYSTEM", "UNAUTHENTICATED", "Identity", "as_identity", "given_identity"]

# UNAUTHENTICATED is also the issuer of an identity nobody vouched for: a typed name, a script, the
# local single-user app.
_MAX: Final = 255


def _field(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text, got {type(value).__name__}")
    value = value.strip()
    if not value or len(value) > max_length or any(ord(c) < 32 for c in value):
        raise ValidationError(f"{what} must be 1 to {max_length} printable characters")
    return value


@dataclass(frozen=True)
class Identity:
    """A person or program as the sign-in vouched for it: issuer and subject, a display name, maybe a role.

    ``role`` is what the caller read from a claim of the sign-in (or None); the records add the
    roles their allow-list grants. An identity whose issuer is ``UNAUTHENTICATED`` is a typed name.

    Raises:
        TypeError: a field is not text.
        ValidationError: a field is empty, too long or holds control characters, or the role is unknown.
    """

    issuer: str
    subject: str
    name: str
    role: str | None = None
    # When the person last proved who they are to the provider (the ID token's auth_time, else its
    # iat), in UTC; None when not known. Not part of who the identity is.
    authenticated_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.authenticated_at is not None and (not isinstance(self.authenticated_at, datetime)
                                                  or self.authenticated_at.tzinfo is None):
            raise ValidationError("the time of authentication must be a datetime with a time zone")
        object.__setattr__(self, "issuer", _field(self.issuer, "the identity's issuer", _MAX))
        object.__setattr__(self, "subject", _field(self.subject, "the identity's subject", _MAX))
        object.__setattr__(self, "name", _field(self.name, "the identity's display name", 128))
        if self.role is not None and self.role not in ROLES:
            raise ValidationError(f"a role must be one of {', '.join(ROLES)}")

    @classmethod
    def unauthenticated(cls, name: str) -> Identity:
        """A typed name nobody vouched for (the single-user app without sign-in, scripts).

        Raises:
            TypeError: ``name`` is not text.
            ValidationError: ``name`` is empty or too long.
        """
        name = _field(name, "the name", 128)
        return cls(UNAUTHENTICATED, name, name)

    @property
    def authenticated(self) -> bool:
        """Whether a sign-in vouched for this identity."""
        return self.issuer != UNAUTHENTICATED

    @property
    def label(self) -> str:
        """How a report names this identity: ``name <issuer|subject>``, or ``name (unauthenticated)``."""
        if not self.authenticated:  # the dashboard marks a typed name so already: never twice
            marked = self.name.endswith(f"({UNAUTHENTICATED})")
            return self.name if marked else f"{self.name} ({UNAUTHENTICATED})"
        return f"{self.name.replace('<', '(').replace('>', ')')} <{self.issuer}|{self.subject}>"


SYSTEM: Final = Identity.unauthenticated("system")
"""Who the records name for what no person did: the software's own writes (the demo patients, a script)."""


def as_identity(actor: object, what: str = "actor") -> Identity:
    """``actor``, checked to be an Identity: who acts is never bare text (a typed name is ``Identity.unauthenticated``).

    Raises:
        TypeError: ``actor`` is not an Identity.
    """
    if not isinstance(actor, Identity):
        hint = " (a typed name is Identity.unauthenticated(name))" if isinstance(actor, str) else ""
        raise TypeError(f"the {what} must be an Identity{hint}, got {type(actor).__name__}")
    return actor


def given_identity(identity: Identity | None, what: str) -> Identity:
    """``identity``, which must be given and be an Identity.

    Raises:
        TypeError: ``identity`` is not an Identity.
        ValidationError: it is not given.
    """
    if identity is None:
        raise ValidationError(f"give the {what}: a signed-in identity, or a typed name as an unauthenticated one")
    return as_identity(identity, what)
