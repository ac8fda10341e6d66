"""The audit trail: who did what to which record, appended in the transaction of the change itself."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from components.records.chain import chain_entry, facts_of
from components.records.errors import ValidationError
from components.records.identity import Identity, as_identity
from components.records.model import AuditEvent, to_record
from components.records.schema import AuditRow, PatientRow, utc_now
from components.records.validation import choice, plain_json

__all__ = ["AUDIT_ACTIONS", "append_event", "audit_details", "checked_event", "events", "sealed"]

AUDIT_ACTIONS: Final = (
    "created",
    "updated",
    "explained",
    "reviewed",
    "signed",
    "exported",
    "viewed",
    "deleted",
    "erased",
    "granted",
    "sealed",
)
_OBJECT_TYPE = re.compile(r"[a-z][a-z_]{0,31}")
# Audit details describe what happened, never who the patient is or what the image showed.
_FORBIDDEN_DETAIL_KEYS: Final = frozenset({"name", "birth_date", "image", "pixels", "png", "cam"})
_MAX_DETAIL_TEXT: Final = 256
_MAX_DETAILS_JSON: Final = 4096


def append_event(
    session: Session,
    action: str,
    actor: Identity,
    *,
    patient_id: int | None,
    object_type: str | None,
    object_id: int | str | None,
    details: dict[str, Any],
) -> None:
    """Chain an audit event into ``session``; it commits with the change it describes, or not at all."""
    fields = {
        "time": utc_now(),
        "actor": actor.name,
        "actor_issuer": actor.issuer,
        "actor_subject": actor.subject,
        "action": action,
        "patient_id": patient_id,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "details": details,
    }
    chain_entry(session, fields)
    # Said on the operator's log once the transaction commits (RecordStore._write): who did what
    # to which row, never who the patient is.
    session.info.setdefault("oplog", []).append({
        "issuer": actor.issuer, "subject": actor.subject, "action": action, "object_type": object_type,
        "object_id": object_id if isinstance(object_id, int) else None,
        "type": details.get("type") if isinstance(details.get("type"), str) else None,
    })


def sealed(session: Session, kind: str, row: Any, patient_id: int) -> dict[str, str]:
    """The seals of ``row``'s facts (a row of kind ``kind``, see ``chain.FACTS``), keyed by its patient's key."""
    key = session.scalar(select(PatientRow.seal_key).where(PatientRow.id == patient_id))
    if not key:
        raise ValidationError("the patient has no key for its facts; open the records with this program to upgrade")
    return facts_of(kind, row, key)


def audit_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details as small plain JSON that carries no names and no image data."""
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValidationError("audit details must be a mapping")
    plain = plain_json(details, "audit details", max_text=_MAX_DETAIL_TEXT, forbidden=_FORBIDDEN_DETAIL_KEYS)
    if len(json.dumps(plain)) > _MAX_DETAILS_JSON:
        raise ValidationError(f"audit details must be at most {_MAX_DETAILS_JSON} characters as JSON")
    return plain


def checked_event(
    action: object, *, actor: object, object_type: object, object_id: object, details: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The checked fields of an event a caller logs (an export, a view), as ``append_event`` takes them."""
    action = choice(action, AUDIT_ACTIONS, "the audit action")
    actor = as_identity(actor)
    if object_type is not None and (not isinstance(object_type, str) or not _OBJECT_TYPE.fullmatch(object_type)):
        raise ValidationError("the object type must be 1 to 32 lower-case letters or underscores")
    if object_id is not None and (
        isinstance(object_id, bool) or not isinstance(object_id, int | str) or len(str(object_id)) > 64
    ):
        raise ValidationError("the object ID must be an integer or text of at most 64 characters")
    return {
        "action": action,
        "actor": actor,
        "object_type": object_type,
        "object_id": object_id,
        "details": audit_details(details),
    }


def events(session: Session, patient_id: int | None = None) -> list[AuditEvent]:
    """Audit events oldest first: all of them, or those about the patient with this row ID."""
    query = (
        select(AuditRow, PatientRow.pseudo_id)
        .outerjoin(PatientRow, AuditRow.patient_id == PatientRow.id)
        .order_by(AuditRow.id)
    )
    if patient_id is not None:
        query = query.where(AuditRow.patient_id == patient_id)
    return [
        to_record(AuditEvent, row, patient_pseudo_id=patient_pseudo_id, details=dict(row.details))
        for row, patient_pseudo_id in session.execute(query)
    ]
