"""The database tables, their column types, and the lookups by key that every write starts from."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from components.records.errors import NotFound, ValidationError
from components.records.identity import ROLES
from components.records.model import REVIEW_STATUSES
from components.records.validation import row_id
from components.screening.vocabulary import EYES, FINDINGS, GRADES, MODALITIES, SEXES

__all__ = [
    "GENESIS_HASH",
    "ID_TABLES",
    "SCHEMA_VERSION",
    "AnalysisRow",
    "AuditHeadRow",
    "AuditRow",
    "Base",
    "ExamRow",
    "PatientRow",
    "ReviewRow",
    "RowIdRow",
    "SchemaVersionRow",
    "SignInSessionRow",
    "UserRoleRow",
    "exam_row",
    "new_seal_key",
    "next_row_id",
    "patient_row",
    "utc_now",
]

SCHEMA_VERSION: Final = 3
GENESIS_HASH: Final = "0" * 64


def utc_now() -> datetime:
    """The time every row and audit event is stamped with: now, in UTC."""
    return datetime.now(UTC)


def _one_of(column: str, allowed: tuple[str, ...]) -> str:
    # The database refuses what the vocabulary does not know, even when written around this store.
    codes = ", ".join(f"'{code}'" for code in allowed)
    return f"{column} IN ({codes})"


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC timestamp; SQLite keeps no zone, so it is dropped on write and put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValidationError("expected a timestamp with a time zone, got a naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """Strict JSON stored as text, which every SQL database can hold."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    """The metadata that holds every table of the records database."""


class SchemaVersionRow(Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class PatientRow(Base):
    __tablename__ = "patients"
    __table_args__ = (CheckConstraint(_one_of("sex", SEXES), name="ck_patients_sex"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudo_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The key of the hashes by which the chain vouches for this patient's facts (components.records.chain);
    # erased with the row, so the entries left behind can no longer be linked to any value.
    seal_key: Mapped[str | None] = mapped_column(String(64))


class ExamRow(Base):
    __tablename__ = "exams"
    __table_args__ = (
        CheckConstraint(_one_of("eye", EYES), name="ck_exams_eye"),
        CheckConstraint(_one_of("modality", MODALITIES), name="ck_exams_modality"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    eye: Mapped[str] = mapped_column(String(2))
    exam_date: Mapped[date] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(16))
    image_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AnalysisRow(Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id"), index=True)
    model_sha256: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(64))
    layer: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(64))
    prediction: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSONText())
    cam: Mapped[bytes] = mapped_column(LargeBinary)
    attention: Mapped[dict[str, Any] | None] = mapped_column(JSONText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReviewRow(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("exam_id", "version", name="uq_reviews_exam_version"),
        CheckConstraint(_one_of("finding", FINDINGS), name="ck_reviews_finding"),
        CheckConstraint(_one_of("grade", GRADES), name="ck_reviews_grade"),
        CheckConstraint(_one_of("status", REVIEW_STATUSES), name="ck_reviews_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    author: Mapped[str] = mapped_column(String(128))
    author_issuer: Mapped[str] = mapped_column(String(255))
    author_subject: Mapped[str] = mapped_column(String(255))
    agrees: Mapped[bool] = mapped_column(Boolean)
    finding: Mapped[str] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    signer: Mapped[str | None] = mapped_column(String(128))
    signer_issuer: Mapped[str | None] = mapped_column(String(255))
    signer_subject: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the content as signed; the "signed" audit entry carries it into the chain.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The position in the hash chain: 1, 2, 3, ... with no gaps.
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    actor_issuer: Mapped[str] = mapped_column(String(255))
    actor_subject: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    # No foreign key: an erased patient's entries stay, pointing at a row ID that names nobody.
    patient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONText())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last entry of the chain, locked by every append so that appends take turns."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class RowIdRow(Base):
    """The last row ID handed out per table, so that no ID is ever used twice, not even an erased patient's."""

    __tablename__ = "row_ids"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class SignInSessionRow(Base):
    """A signed-in browser session: when it began and was last active, and when and why it ended.

    Its ID is a digest of the ID token's claims, so a copy of the sign-in cookie taken before sign-out
    names an ended session and is refused.
    """

    __tablename__ = "sign_in_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(16))


class UserRoleRow(Base):
    """The allow-list: a role the records grant to an identity, whatever its sign-in claims."""

    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="ck_user_roles_role"),)

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


ID_TABLES: Final = ("patients", "exams", "analyses", "reviews")
"""The tables whose rows the audit trail names by ID: their IDs come from ``next_row_id``."""


def next_row_id(session: Session, table: str) -> int:
    """A new ID for a row of ``table`` (one of ``ID_TABLES``), never handed out before.

    The counter's row stays locked until the transaction ends, so two writers take turns. SQLite
    (without AUTOINCREMENT) and a restored PostgreSQL sequence would both give an erased patient's
    ID to the next one, and with it the erased patient's audit entries.
    """
    counter = session.scalars(select(RowIdRow).where(RowIdRow.name == table).with_for_update()).one()
    counter.last += 1
    session.flush()
    return counter.last


def new_seal_key() -> str:
    """A fresh random key for a patient's fact hashes: 256 bits, as hexadecimal."""
    return secrets.token_hex(32)


def patient_row(session: Session, pseudo_id: str) -> PatientRow:
    """The patient with this pseudonymous ID; NotFound otherwise."""
    row = session.scalars(select(PatientRow).where(PatientRow.pseudo_id == pseudo_id)).first()
    if row is None:
        raise NotFound("no patient has this pseudonymous ID")
    return row


def exam_row(session: Session, exam_id: object, *, lock: bool = False) -> ExamRow:
    """The exam with this ID; ``lock`` holds it until the transaction ends. NotFound otherwise."""
    query = select(ExamRow).where(ExamRow.id == row_id(exam_id, "an exam ID"))
    # FOR UPDATE serialises review versions on PostgreSQL (BEGIN IMMEDIATE does on SQLite).
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("no exam has this ID")
    return row
