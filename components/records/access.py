"""Who may do what: roles from the allow-list in the records and from the sign-in's claim."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from components.records.errors import PermissionDenied
from components.records.identity import Identity
from components.records.schema import UserRoleRow

__all__ = ["require_role", "roles_of"]


def roles_of(session: Session, identity: Identity) -> frozenset[str]:
    """The roles of a signed-in identity: the allow-list's grants plus the role its claim carries."""
    if not identity.authenticated:
        return frozenset()
    granted = session.scalars(
        select(UserRoleRow.role).where(UserRoleRow.issuer == identity.issuer, UserRoleRow.subject == identity.subject)
    )
    return frozenset(granted) | ({identity.role} if identity.role else set())


def require_role(session: Session, identity: Identity, roles: tuple[str, ...], what: str, *, sign_in: bool) -> None:
    """Refuse ``what`` unless ``identity`` holds one of ``roles``.

    Without required sign-in (the single-user app on localhost), a typed name may act: it is
    recorded as unauthenticated. With it, a typed name never may.

    Raises:
        PermissionDenied: not signed in where sign-in is required, or no role that allows ``what``.
    """
    if not identity.authenticated:
        if sign_in:
            raise PermissionDenied(f"sign in to {what}")
        return
    if not roles_of(session, identity) & set(roles):
        article = "an" if roles[0][0] in "aeiou" else "a"
        raise PermissionDenied(f"only {article} {' or '.join(roles)} may {what}")
