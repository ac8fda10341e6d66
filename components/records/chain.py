"""The hash chain that makes the audit trail and every clinical fact tamper-evident, and its verification.

Each audit entry hashes the one before it. An entry that writes a clinical fact also carries that
fact's seal: for each field of the row it wrote (a patient's ID, name, birth date and sex; an
exam's patient, eye, date, modality and photograph; an analysis; every review version), an HMAC
keyed by the patient's own random key (``PatientRow.seal_key``). ``verify_chain`` recomputes the
seals of every row from the latest entry that wrote it, so a change made around the store names
the first changed fact. Erasing a patient deletes its key: the entries it leaves behind can no
longer be linked to any value, only their counts remain meaningful.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from components.records.schema import GENESIS_HASH, AnalysisRow, AuditHeadRow, AuditRow, ExamRow, PatientRow, ReviewRow

__all__ = ["FACTS", "ChainReport", "audit_hash", "chain_entry", "facts_of", "review_hash", "verify_chain"]

# Fields of a review that its signature covers, in the order they are hashed.
_SIGNED_FIELDS: Final = (
    "id", "exam_id", "version", "supersedes", "author", "author_issuer", "author_subject", "agrees",
    "finding", "grade", "notes", "status", "signed_at", "signer", "signer_issuer", "signer_subject",
)
_AUDIT_FIELDS: Final = (
    "seq", "time", "actor", "actor_issuer", "actor_subject", "action", "patient_id", "object_type",
    "object_id", "details",
)


# The facts of each kind of row that the chain vouches for, as (object type, column, words for a message).
FACTS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "patient": (("pseudo_id", "pseudonymous ID"), ("name", "name"), ("birth_date", "birth date"), ("sex", "sex")),
    "exam": (("patient_id", "patient"), ("eye", "eye"), ("exam_date", "date"), ("modality", "modality"),
             ("image_sha256", "photograph")),
    "analysis": (("exam_id", "exam"), ("model_sha256", "model"), ("model_name", "model name"),
                 ("method", "method"), ("layer", "layer"), ("target", "target class"),
                 ("prediction", "prediction"), ("confidence", "confidence"),
                 ("probabilities", "probabilities"), ("attention", "attention check"), ("cam", "map")),
    "review": (("exam_id", "exam"), ("version", "version"), ("supersedes", "earlier version"),
               ("author", "author"), ("author_issuer", "author"), ("author_subject", "author"),
               ("agrees", "agreement"), ("finding", "finding"), ("grade", "grade"), ("notes", "notes"),
               ("status", "status"), ("signed_at", "signing time"), ("signer", "signer"),
               ("signer_issuer", "signer"), ("signer_subject", "signer"), ("content_hash", "signed content")),
}
_ROWS: Final[dict[str, type[PatientRow | ExamRow | AnalysisRow | ReviewRow]]] = {
    "patient": PatientRow, "exam": ExamRow, "analysis": AnalysisRow, "review": ReviewRow}
_SEAL_CHARS: Final = 32  # 128 bits of each HMAC-SHA-256


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        # Microseconds are kept by both SQLite (as text) and PostgreSQL, so a read-back hashes the same.
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return value


def facts_of(kind: str, row: Any, key: str) -> dict[str, str]:
    """The seals of a row's facts: for each field of ``FACTS[kind]``, an HMAC of its value keyed by ``key``.

    ``key`` is the patient's ``seal_key`` (hexadecimal); the row's kind and ID are in every message,
    so a seal cannot be moved to another row or field.
    """
    secret = bytes.fromhex(key)
    seals = {}
    for field, _words in FACTS[kind]:
        value = json.dumps(_plain(getattr(row, field)), sort_keys=True, allow_nan=False, separators=(",", ":"))
        message = f"{kind}:{row.id}:{field}:{value}".encode()
        seals[field] = hmac.new(secret, message, hashlib.sha256).hexdigest()[:_SEAL_CHARS]
    return seals


def _digest(prefix: str, values: dict[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, allow_nan=False, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prefix + canonical).encode("ascii")).hexdigest()


def audit_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of one audit entry: SHA-256 over the previous entry's hash and this entry's fields."""
    return _digest(prev_hash, {name: _plain(fields[name]) for name in _AUDIT_FIELDS})


def review_hash(row: object) -> str:
    """SHA-256 of a signed review's content, its author and its signer (a ReviewRow or a row of its table)."""
    return _digest("review:", {name: _plain(getattr(row, name)) for name in _SIGNED_FIELDS})


def chain_entry(session: Session, fields: dict[str, Any]) -> None:
    """Append an audit row for ``fields`` (all but seq and the hashes), chained after the last entry.

    The head row is locked until the transaction ends, so appends from threads and processes take
    turns and no two entries claim the same place. The entry is written before the head moves on
    to it: the database refuses any other change of the head (a trigger).
    """
    head = session.scalars(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one()
    values = {**fields, "seq": head.seq + 1}
    previous = head.hash
    digest = audit_hash(previous, values)
    entry = AuditRow(**values, prev_hash=previous, hash=digest)
    session.add(entry)
    session.flush()
    head.seq, head.hash = values["seq"], digest
    session.flush()


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
    return ChainReport(entries, checked, _first_fact_problem(session, erased))


def _first_fact_problem(session: Session, erased: set[int]) -> str | None:
    """The first row whose facts differ from the seals of the latest entry that wrote it, or that is gone."""
    sealed: dict[tuple[str, str], tuple[int | None, dict[str, str]]] = {}
    writes = select(AuditRow.object_type, AuditRow.object_id, AuditRow.patient_id, AuditRow.details).where(
        AuditRow.object_type.in_(tuple(FACTS))).order_by(AuditRow.seq)
    for kind, object_id, patient_id, details in session.execute(writes):
        facts = details.get("facts") if isinstance(details, dict) else None
        if isinstance(facts, dict) and object_id is not None:
            sealed[(kind, object_id)] = (patient_id, facts)
    keys = dict(session.execute(select(PatientRow.id, PatientRow.seal_key)).all())
    for kind, table in _ROWS.items():
        # Streamed: an analysis row carries its map.
        rows: Iterable[Any] = session.scalars(select(table).order_by(table.id).execution_options(yield_per=256))
        for row in rows:
            found = sealed.pop((kind, str(row.id)), None)
            if found is None:
                return f"{kind} {row.id} is in no audit entry: it was written around the store"
            patient_id, facts = found
            key = keys.get(patient_id) if patient_id is not None else None
            if not key:
                return f"{kind} {row.id}: the key of its patient's facts is missing"
            for (field, words), (_, seal) in zip(FACTS[kind], facts_of(kind, row, key).items(), strict=True):
                if not hmac.compare_digest(str(facts.get(field, "")), seal):
                    return f"{kind} {row.id}: its {words} was changed after it was recorded"
    for (kind, object_id), (patient_id, _facts) in sorted(sealed.items()):
        if patient_id not in erased:
            return f"{kind} {object_id} was removed"
    return None


def _present(session: Session, review_id: str, erased: set[int]) -> bool:
    row = session.get(ReviewRow, int(review_id))
    if row is not None:
        return True
    patient = session.scalar(
        select(AuditRow.patient_id).where(AuditRow.object_type == "review", AuditRow.object_id == review_id)
    )
    return patient in erased
