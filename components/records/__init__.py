"""Patient records for the dashboard: patients, eye exams, analyses, signed reviews, audit trail.

``RecordStore`` is the one object callers use. Inside the package each module holds one concern:

- ``store``: RecordStore, the façade that composes the others, one transaction per write
- ``model``: the frozen records it returns (PatientRecord, ExamRecord, ..., WorklistRow)
- ``errors``: RecordsError and its subclasses
- ``validation``: the checks every value passes before it is kept
- ``schema``: the database tables, their column types and the schema version
- ``settings``: the data folder, the database URL and the engine
- ``images``: photographs as metadata-free PNGs named by their SHA-256
- ``analyses``: a prediction and its class-activation map as stored
- ``reviews``: review versions, editing until signed, signing
- ``worklist``: one line per patient
- ``audit_trail``: audit events and what their details may hold
- ``chain``: the hash chain over audit entries and signed reviews, and its verification
- ``identity``, ``access``: who acts (issuer, subject, name) and which roles allow what
- ``migrations``: creating the schema and upgrading an older one (Alembic operations)

The eye, modality, sex, finding and grade codes are the product's vocabulary
(``components.screening.vocabulary``); they are re-exported here for callers that import them from records.
"""

from __future__ import annotations

from components.records.anchor import AnchorError, AnchorPoint, anchor_at
from components.records.audit_trail import AUDIT_ACTIONS
from components.records.chain import ChainReport
from components.records.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    RecordsError,
    ReviewLocked,
    SchemaVersionError,
    SignInTooOld,
    StorageError,
    ValidationError,
)
from components.records.identity import ROLES, UNAUTHENTICATED, Identity
from components.records.model import (
    PATIENT_FIELDS,
    REVIEW_STATUSES,
    AnalysisRecord,
    AuditEvent,
    ExamRecord,
    PatientRecord,
    ReviewRecord,
    WorklistRow,
)
from components.records.schema import SCHEMA_VERSION
from components.records.settings import data_dir
from components.records.store import RecordStore

__all__ = [
    "AUDIT_ACTIONS",
    "PATIENT_FIELDS",
    "REVIEW_STATUSES",
    "ROLES",
    "SCHEMA_VERSION",
    "UNAUTHENTICATED",
    "AlreadyExists",
    "AnalysisRecord",
    "AnchorError",
    "AnchorPoint",
    "AuditEvent",
    "ChainReport",
    "ExamRecord",
    "Identity",
    "NotFound",
    "PatientRecord",
    "PermissionDenied",
    "RecordStore",
    "RecordsError",
    "ReviewLocked",
    "ReviewRecord",
    "SchemaVersionError",
    "SignInTooOld",
    "StorageError",
    "ValidationError",
    "WorklistRow",
    "anchor_at",
    "data_dir",
]
