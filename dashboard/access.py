"""Who uses the dashboard and what they may do: roles, the actor the records name, where it may serve.

Nothing here draws or imports Streamlit: ``dashboard.session`` reads the secrets and ``st.user`` and
hands them to these functions.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from components.base import config
from components.records import Identity
from components.screening.vocabulary import ROLES, UNAUTHENTICATED

__all__ = [
    "PERMISSIONS",
    "AccessSettings",
    "Person",
    "authenticated_at",
    "bind_refusal",
    "identity",
    "is_local_address",
    "local_person",
    "person_from_claims",
    "sign_in_id",
]

PERMISSIONS: Final[Mapping[str, str]] = {
    "read": "viewer",
    "review": "clinician",  # create patients, add photographs, save and sign reviews
    "manage_models": "admin",
    "manage_users": "admin",
    "operate": "admin",  # the Status page: whether every configured part is ready
}
"""Each action and the role it needs; reading is open to every role."""

_MAX_ACTOR: Final = 128  # the record store's limit on an actor or reviewer
_DEFAULT_ROLE_CLAIM: Final = "roles"


@dataclass(frozen=True)
class AccessSettings:
    """Where roles come from: a claim of the ID token (a dotted path) and an allow-list of subjects or emails."""

    role_claim: str = _DEFAULT_ROLE_CLAIM
    allow: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> AccessSettings:
        """Read the ``[access]`` section of the secrets: ``role_claim`` and ``[access.roles]`` role = [ids].

        Raises:
            TypeError: the section, the claim name or a list is of the wrong type.
            ValueError: a role is not one of ``clinician``, ``viewer``, ``admin``, or the claim name is empty.
        """
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise TypeError(f"the [access] section must be a table, got {type(section).__name__}")
        claim = section.get("role_claim", _DEFAULT_ROLE_CLAIM)
        if not isinstance(claim, str):
            raise TypeError(f"access.role_claim must be text, got {type(claim).__name__}")
        if not claim.strip():
            raise ValueError("access.role_claim must name a claim, such as 'roles' or 'realm_access.roles'")
        lists = section.get("roles", {})
        if not isinstance(lists, Mapping):
            raise TypeError(f"[access.roles] must be a table of role = [ids], got {type(lists).__name__}")
        allow: dict[str, frozenset[str]] = {}
        for role, ids in lists.items():
            if role not in ROLES:
                raise ValueError(f"[access.roles] names the role {role!r}; expected one of {', '.join(ROLES)}")
            if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
                raise TypeError(f"access.roles.{role} must be a list of subjects or emails")
            allow[role] = frozenset(i.strip().lower() for i in ids if i.strip())
        return cls(role_claim=claim.strip(), allow=allow)


@dataclass(frozen=True)
class Person:
    """The person using this session: signed in (issuer and subject) or, without sign-in, a typed name."""

    name: str
    issuer: str | None
    subject: str | None
    roles: frozenset[str]
    # When the provider last verified them (the token's auth_time, else its iat), and this sign-in's ID.
    authenticated_at: datetime | None = None
    session_id: str | None = None

    @property
    def authenticated(self) -> bool:
        """Whether an identity provider vouched for this person."""
        return self.issuer is not None and self.subject is not None

    def may(self, action: str) -> bool:
        """Whether this person's roles allow ``action`` (a key of ``PERMISSIONS``).

        Raises:
            ValueError: ``action`` is not a known action.
        """
        if action not in PERMISSIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(PERMISSIONS)}")
        if action == "read":
            return bool(self.roles)
        return PERMISSIONS[action] in self.roles


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _claimed_roles(value: Any) -> set[str]:
    # Providers send roles as a list, or as one text of names separated by spaces or commas.
    if isinstance(value, str):
        names = value.replace(",", " ").split()
    elif isinstance(value, list | tuple):
        names = [v for v in value if isinstance(v, str)]
    else:
        return set()
    return {n.strip().lower() for n in names} & set(ROLES)


def _verified_email(claims: Mapping[str, Any]) -> set[str]:
    # An address the provider has not verified may be anyone's (a provider that lets users register
    # or change their address): it matches no allow-list entry. Providers send true, some "true".
    email, verified = claims.get("email"), claims.get("email_verified")
    if not isinstance(email, str) or not email.strip():
        return set()
    if verified is True or (isinstance(verified, str) and verified.strip().lower() == "true"):
        return {email.strip().lower()}
    return set()


def person_from_claims(claims: Mapping[str, Any], settings: AccessSettings) -> Person:
    """The signed-in person of an ID token's claims (``st.user``), with roles from the claim and the allow-list.

    The allow-list matches the subject, ``issuer|subject`` (the strongest: unique across providers)
    and the e-mail address only when the token says it is verified (``email_verified`` true).

    Raises:
        TypeError: ``claims`` is not a mapping or ``settings`` not ``AccessSettings``.
        ValueError: the claims lack the issuer (``iss``) or the subject (``sub``).
    """
    if not isinstance(claims, Mapping):
        raise TypeError(f"claims must be a mapping, got {type(claims).__name__}")
    if not isinstance(settings, AccessSettings):
        raise TypeError(f"settings must be AccessSettings, got {type(settings).__name__}")
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
        raise ValueError("the identity provider's token names no issuer (iss) or no subject (sub)")
    ids = {subject.lower(), f"{issuer}|{subject}".lower()} | _verified_email(claims)
    roles = _claimed_roles(_claim(claims, settings.role_claim))
    roles |= {role for role, allowed in settings.allow.items() if ids & allowed}
    name = next((str(claims[k]).strip() for k in ("name", "preferred_username", "email")
                 if isinstance(claims.get(k), str) and str(claims[k]).strip()), subject)
    return Person(name=name, issuer=issuer, subject=subject, roles=frozenset(roles),
                  authenticated_at=authenticated_at(claims), session_id=sign_in_id(claims))


def authenticated_at(claims: Mapping[str, Any]) -> datetime | None:
    """When the provider last verified the person: ``auth_time`` (OpenID Connect Core 2), else the token's ``iat``.

    A provider asked with ``prompt=login`` or ``max_age`` sends ``auth_time``; without it, the token's
    issue time is when the sign-in that produced it happened.
    """
    for key in ("auth_time", "iat"):
        value = claims.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return datetime.fromtimestamp(value, UTC)
    return None


def sign_in_id(claims: Mapping[str, Any]) -> str:
    """One sign-in's ID: a digest of the claims one login gives (issuer, subject, issue and auth times, nonce).

    The sign-in cookie carries these claims, so a copy of it, replayed after sign-out, has the same ID.
    """
    parts = {key: claims.get(key) for key in ("iss", "sub", "iat", "auth_time", "nonce", "exp", "sid")}
    canonical = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def local_person(typed_name: object, *, local: bool = True) -> Person:
    """The user of a dashboard without sign-in: a typed (unverified) name.

    On this computer (``local``) the one user holds every role. Served beyond it without sign-in
    (only with the deliberate ``CATARACT_CAM_ALLOW_NO_AUTH=1``, a platform's login in front), every
    visitor is anyone: they review, but none is an admin (no model upload or switch, no roles).

    Raises:
        TypeError: ``typed_name`` is not text.
    """
    if not isinstance(typed_name, str):
        raise TypeError(f"the typed name must be text, got {type(typed_name).__name__}")
    roles = frozenset(ROLES) if local else frozenset(ROLES) - {"admin"}
    return Person(name=" ".join(typed_name.split()), issuer=None, subject=None, roles=roles)


def identity(person: Person) -> Identity:
    """The record store's identity for ``person``: issuer, subject and name when signed in, else the typed name.

    A signed-in person's strongest role goes with it (clinician, then admin, then viewer), so the
    store can refuse what the role does not allow. Without sign-in the identity is the store's
    unauthenticated one, its name marked so wherever it is printed: ``Dr Bea (unauthenticated)``.
    The identity's :attr:`~components.records.Identity.label` is how a report names it.

    Raises:
        TypeError: ``person`` is not a ``Person``.
        ValueError: the name or the identity does not fit the store's limits.
    """
    if not isinstance(person, Person):
        raise TypeError(f"expected a Person, got {type(person).__name__}")
    if not person.authenticated:
        suffix = f" ({UNAUTHENTICATED})"
        return Identity.unauthenticated((person.name or "unnamed user")[: _MAX_ACTOR - len(suffix)].rstrip() + suffix)
    role = next((r for r in ("clinician", "admin", "viewer") if r in person.roles), None)
    name = " ".join(person.name.split())[:_MAX_ACTOR] or str(person.subject)[:_MAX_ACTOR]
    return Identity(str(person.issuer), str(person.subject), name, role=role,
                    authenticated_at=person.authenticated_at)


def is_local_address(address: str | None) -> bool:
    """Whether the server's bind address reaches only this computer (a loopback address or a Unix socket).

    Raises:
        TypeError: ``address`` is neither text nor None.
    """
    if address is None:
        return False  # unset: all interfaces
    if not isinstance(address, str):
        raise TypeError(f"the address must be text, got {type(address).__name__}")
    address = address.strip().strip("[]")
    if address.startswith("unix://") or address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def bind_refusal(address: str | None, *, auth_configured: bool, allow_no_auth: bool) -> str | None:
    """Why the dashboard must not serve on ``address``, or None when it may.

    Without ``[auth]`` it serves this computer only, unless ``CATARACT_CAM_ALLOW_NO_AUTH=1`` (``allow_no_auth``)
    says that a platform's login stands in front.
    """
    if auth_configured or is_local_address(address) or allow_no_auth:
        return None
    return (f"This dashboard refuses to serve patient data on {address or 'all interfaces'} without sign-in. "
            "Configure [auth] in .streamlit/secrets.toml (see .streamlit/secrets.example.toml) or the platform's "
            f"{config.OIDC_METADATA_URL.name}, {config.OIDC_CLIENT_ID.name}, {config.OIDC_CLIENT_SECRET.name}, "
            f"{config.COOKIE_SECRET.name} and {config.PUBLIC_URL.name}, bind to 127.0.0.1, "
            f"or set {config.ALLOW_NO_AUTH.name}=1 only when a platform's own login stands in front.")
