"""The hash chain that makes the audit trail and signed reviews tamper-evident, and its verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from components.records.schema import GENESIS_HASH, AuditHeadRow, AuditRow, ReviewRow

__all__ = ["ChainReport", "audit_hash", "chain_entry", "review_hash", "verify_chain"]

# Fields of a review that its signature covers, in the order they are hashed.
_SIGNED_FIELDS: Final = (
    "id", "exam_id", "version", "supersedes", "author", "author_issuer", "author_subject", "agrees",
    "finding", "grade", "notes", "status", "signed_at", "signer", "signer_issuer", "signer_subject",
)
_AUDIT_FIELDS: Final = (
    "seq", "time", "actor", "actor_issuer", "actor_subject", "action", "patient_id", "object_type",
    "object_id", "details",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        # Microseconds are kept by both SQLite (as text) and PostgreSQL, so a read-back hashes the same.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def _digest(prefix: str, values: dict[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, allow_nan=False, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prefix + canonical).encode("ascii")).hexdigest()


def audit_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of one audit entry: SHA-256 over the previous entry's hash and this entry's fields."""
    return _digest(prev_hash, {name: _plain(fields[name]) for name in _AUDIT_FIELDS})


def review_hash(row: object) -> str:
    """SHA-256 of a signed review's content, its author and its signer (a ReviewRow or a row of its table)."""
    return _digest("review:", {name: _plain(getattr(row, name)) for name in _SIGNED_FIELDS})


def chain_entry(session: Session, fields: dict[str, Any]) -> AuditRow:
    """An audit row for ``fields`` (all but seq and the hashes), chained after the last entry.

    The head row is locked until the transaction ends, so appends from threads and processes take
    turns and no two entries claim the same place.
    """
    head = session.scalars(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one()
    values = {**fields, "seq": head.seq + 1}
    previous = head.hash
    digest = audit_hash(previous, values)
    head.seq, head.hash = values["seq"], digest
    return AuditRow(**values, prev_hash=previous, hash=digest)


@dataclass(frozen=True)
class ChainReport:
    """What ``verify_chain`` found: the number of entries and signed reviews checked, and the first problem."""

    entries: int
    signed_reviews: int
    problem: str | None

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None


def _first_audit_problem(rows: Iterable[AuditRow], head: AuditHeadRow | None) -> tuple[int, str | None]:
    previous, expected_seq, count = GENESIS_HASH, 1, 0
    for row in rows:
        count += 1
        fields = {name: getattr(row, name) for name in _AUDIT_FIELDS}
        if row.seq != expected_seq or row.prev_hash != previous:
            if row.seq > expected_seq:
                return count, f"audit entry {expected_seq} was removed (the chain jumps to entry {row.seq})"
            return count, f"audit entry {row.seq} is not where the chain puts it: inserted or reordered"
        if audit_hash(previous, fields) != row.hash:
            return count, f"audit entry {row.seq} was changed after it was written"
        previous, expected_seq = row.hash, expected_seq + 1
    if head is not None and head.seq >= expected_seq:
        return count, f"audit entry {expected_seq} was removed (the chain ends at {head.seq})"
    return count, None


def verify_chain(session: Session) -> ChainReport:
    """Walk the audit chain, then check each signed review against its hash and its "signed" entry."""
    head = session.get(AuditHeadRow, 1)
    rows = session.scalars(select(AuditRow).order_by(AuditRow.seq))
    entries, problem = _first_audit_problem(rows, head)
    if problem is not None:
        return ChainReport(entries, 0, problem)
    signed_entries: dict[str, str] = {}
    erased: set[int] = set()
    marked = select(AuditRow).where(AuditRow.action.in_(("signed", "erased"))).order_by(AuditRow.seq)
    for row in session.scalars(marked):
        if row.action == "erased" and row.patient_id is not None:
            erased.add(row.patient_id)
        elif row.object_id is not None:
            signed_entries[row.object_id] = str(row.details.get("content_hash", ""))
    checked = 0
    for review in session.scalars(select(ReviewRow).where(ReviewRow.status == "signed").order_by(ReviewRow.id)):
        checked += 1
        if review.content_hash != review_hash(review):
            return ChainReport(entries, checked, f"signed review {review.id} was changed after it was signed")
        if signed_entries.get(str(review.id)) != review.content_hash:
            return ChainReport(entries, checked, f"signed review {review.id} has no matching signing entry")
    for review_id, content_hash in signed_entries.items():
        if content_hash and not _present(session, review_id, erased):
            return ChainReport(entries, checked, f"signed review {review_id} was removed")
    return ChainReport(entries, checked, None)


def _present(session: Session, review_id: str, erased: set[int]) -> bool:
    row = session.get(ReviewRow, int(review_id))
    if row is not None:
        return True
    patient = session.scalar(
        select(AuditRow.patient_id).where(AuditRow.object_type == "review", AuditRow.object_id == review_id)
    )
    return patient in erased
