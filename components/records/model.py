"""The records the store hands back: frozen dataclasses, so callers never hold database objects."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Final, TypeVar

import numpy as np

from components.lens.attention import AttentionResult
from components.records.identity import UNAUTHENTICATED

__all__ = [
    "PATIENT_FIELDS",
    "REVIEW_STATUSES",
    "AnalysisRecord",
    "AuditEvent",
    "ExamRecord",
    "PatientRecord",
    "ReviewRecord",
    "WorklistRow",
    "to_record",
]

PATIENT_FIELDS: Final = ("name", "birth_date", "sex")
REVIEW_STATUSES: Final = ("reviewed", "signed")


@dataclass(frozen=True)
class PatientRecord:
    """One patient, addressed by a pseudonymous ID."""

    pseudo_id: str
    name: str | None
    birth_date: date | None
    sex: str | None
    created_at: datetime


@dataclass(frozen=True)
class ExamRecord:
    """One photograph of one eye, stored as a metadata-free PNG named by its SHA-256."""

    id: int
    pseudo_id: str
    eye: str
    exam_date: date
    modality: str
    image_sha256: str
    created_at: datetime


@dataclass(frozen=True)
class AnalysisRecord:
    """One model prediction with its class-activation map for an exam."""

    id: int
    exam_id: int
    model_sha256: str
    model_name: str
    method: str
    layer: str
    target: str
    prediction: str
    confidence: float
    probabilities: dict[str, float]
    cam: np.ndarray = field(compare=False, repr=False)
    attention: AttentionResult | None  # the attention check as it was recorded (its region without a mask)
    created_at: datetime


@dataclass(frozen=True)
class ReviewRecord:
    """One version of a clinician's review of an exam."""

    id: int
    exam_id: int
    version: int
    supersedes: int | None
    author: str
    author_issuer: str
    author_subject: str
    agrees: bool
    finding: str
    grade: str
    notes: str
    status: str
    signed_at: datetime | None
    signer: str | None
    signer_issuer: str | None
    signer_subject: str | None
    content_hash: str | None
    created_at: datetime

    @property
    def reviewer(self) -> str:
        """The clinician who answers for this version: its signer once signed, its author before."""
        return self.signer if self.signer is not None else self.author

    @property
    def authenticated(self) -> bool:
        """Whether a sign-in vouched for the person who answers for this version."""
        issuer = self.signer_issuer if self.signer is not None else self.author_issuer
        return issuer != UNAUTHENTICATED


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit trail."""

    id: int
    seq: int
    time: datetime
    actor: str
    actor_issuer: str
    actor_subject: str
    action: str
    patient_pseudo_id: str | None
    object_type: str | None
    object_id: str | None
    details: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class WorklistRow:
    """One patient's line on the worklist."""

    pseudo_id: str
    name: str | None
    n_eyes: int
    n_exams: int
    last_exam_date: date | None
    od_prediction: str | None
    od_confidence: float | None
    os_prediction: str | None
    os_confidence: float | None
    review_status: str


_Record = TypeVar("_Record", PatientRecord, ExamRecord, AnalysisRecord, ReviewRecord, AuditEvent)


def to_record(kind: type[_Record], row: object, **computed: Any) -> _Record:
    """Copy a row's columns into a frozen record; ``computed`` gives the fields a row lacks."""
    shared = {f.name: getattr(row, f.name) for f in fields(kind) if f.name not in computed}
    return kind(**shared, **computed)
