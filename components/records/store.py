"""RecordStore: the one object callers use, composing the database, the image folder and the audit trail."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Select, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from components.records import reviews
from components.records.analyses import analysis_columns, analysis_record
from components.records.audit_trail import append_event, checked_event, events
from components.records.errors import AlreadyExists, storage_error
from components.records.images import ImageFolder, png_bytes
from components.records.model import (
    AnalysisRecord,
    AuditEvent,
    ExamRecord,
    PatientRecord,
    ReviewRecord,
    WorklistRow,
    to_record,
)
from components.records.schema import (
    AnalysisRow,
    ExamRow,
    PatientRow,
    create_schema,
    exam_row,
    patient_row,
    utc_now,
)
from components.records.settings import (
    IMAGES_FOLDER,
    WRITE_OPTION,
    configured_data_dir,
    database_url,
    ensure_folder,
    make_engine,
)
from components.records.validation import (
    calendar_date,
    choice,
    patient_values,
    required_text,
    row_id,
    text,
)
from components.records.validation import (
    pseudo_id as checked_pseudo_id,
)
from components.records.worklist import worklist_rows
from components.vocabulary import EYES, MODALITIES, WORKLIST_STATUSES

__all__ = ["RecordStore"]

_TAKEN = "a patient with this pseudonymous ID already exists; choose another ID"


def _actor(actor: object) -> str:
    return required_text(actor, "the actor", 128)


def _patients_query(search: str | None) -> Select[PatientRow]:
    query = select(PatientRow)
    wanted = text(search, "the search", 200, required=False)
    if wanted:
        query = query.where(
            or_(
                PatientRow.pseudo_id.icontains(wanted, autoescape=True),
                PatientRow.name.icontains(wanted, autoescape=True),
            )
        )
    return query


class RecordStore:
    """Patients, exams, analyses, reviews and their audit trail: one database, one image folder.

    Every write is one transaction that also appends its audit event. Methods return frozen
    dataclasses, never ORM objects. One store may be shared by the threads of a server.
    Errors are RecordsError subclasses (ValidationError, NotFound, AlreadyExists, ReviewLocked,
    SchemaVersionError), all ValueErrors, and never quote a name, a birth date or an ID.
    """

    def __init__(self, url: str | None = None, *, data_dir: Path | None = None) -> None:
        folder = Path(data_dir) if data_dir is not None else configured_data_dir()
        self.data_dir: Path = ensure_folder(folder)
        self.images_dir: Path = self.data_dir / IMAGES_FOLDER
        self._images = ImageFolder(self.images_dir)
        url = database_url(url, self.data_dir)
        # Safe to show on a settings page: a server password is masked.
        self.url: str = make_url(url).render_as_string(hide_password=True)
        try:
            self._engine = make_engine(url)
        except OSError as error:
            raise storage_error(error) from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            with self._engine.connect() as connection:
                connection.execution_options(**{WRITE_OPTION: True})
                with connection.begin():
                    create_schema(connection)
        except OperationalError as error:
            self._engine.dispose()
            raise storage_error(error) from None
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        """Close the database connections; the store must not be used afterwards."""
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        # A full disk or a read-only file rolls the transaction back and reaches the user as one sentence.
        try:
            with self._sessions.begin() as session:
                session.connection(execution_options={WRITE_OPTION: True})
                yield session
        except OperationalError as error:
            raise storage_error(error) from None

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    # Images -----------------------------------------------------------------------------------

    def put_image(self, pixels: np.ndarray) -> str:
        """Store RGB uint8 pixels as a metadata-free PNG named by its SHA-256; return the digest."""
        return self._images.put(png_bytes(pixels))

    def get_image(self, sha256: str) -> np.ndarray:
        """Return the stored image with this SHA-256 as an RGB uint8 array."""
        return self._images.get(sha256)

    # Patients ---------------------------------------------------------------------------------

    def create_patient(
        self,
        pseudo_id: str,
        *,
        name: str | None = None,
        birth_date: date | str | None = None,
        sex: str | None = None,
        actor: str = "system",
    ) -> PatientRecord:
        """Create a patient under a new pseudonymous ID."""
        pseudo_id = checked_pseudo_id(pseudo_id)
        values = patient_values({"name": name, "birth_date": birth_date, "sex": sex})
        actor = _actor(actor)
        try:
            with self._write() as session:
                if session.scalar(select(PatientRow.id).where(PatientRow.pseudo_id == pseudo_id)) is not None:
                    raise AlreadyExists(_TAKEN)
                row = PatientRow(pseudo_id=pseudo_id, created_at=utc_now(), **values)
                session.add(row)
                session.flush()
                append_event(
                    session, "created", actor, patient_id=row.id, object_type="patient", object_id=row.id, details={}
                )
                return to_record(PatientRecord, row)
        except IntegrityError:
            # Another process created the same ID between our check and our insert.
            raise AlreadyExists(_TAKEN) from None

    def get_patient(self, pseudo_id: str) -> PatientRecord:
        """Return the patient with this pseudonymous ID."""
        pseudo_id = checked_pseudo_id(pseudo_id)
        with self._read() as session:
            return to_record(PatientRecord, patient_row(session, pseudo_id))

    def update_patient(self, pseudo_id: str, /, *, actor: str, **fields: Any) -> PatientRecord:
        """Change name, birth_date or sex; the audit event names the fields, never their values."""
        pseudo_id = checked_pseudo_id(pseudo_id)
        actor = _actor(actor)
        values = patient_values(fields)
        with self._write() as session:
            row = patient_row(session, pseudo_id)
            changed = sorted(key for key, value in values.items() if getattr(row, key) != value)
            for key in changed:
                setattr(row, key, values[key])
            if changed:
                append_event(
                    session,
                    "updated",
                    actor,
                    patient_id=row.id,
                    object_type="patient",
                    object_id=row.id,
                    details={"fields": changed},
                )
            return to_record(PatientRecord, row)

    def list_patients(self, search: str | None = None) -> list[PatientRecord]:
        """Return patients by pseudonymous ID, optionally those whose ID or name has ``search``."""
        with self._read() as session:
            query = _patients_query(search).order_by(PatientRow.pseudo_id)
            return [to_record(PatientRecord, row) for row in session.scalars(query)]

    # Exams and analyses -----------------------------------------------------------------------

    def add_exam(
        self,
        pseudo_id: str,
        *,
        eye: str,
        pixels: np.ndarray,
        exam_date: date | str | None = None,
        modality: str = "external",
        actor: str = "system",
    ) -> ExamRecord:
        """Store a photograph of one eye (the file before the row naming it) and return the exam.

        Both are kept or neither: when the row cannot be inserted, a file this call created is removed.

        Raises:
            ValidationError: a value is not one the store accepts.
            NotFound: no patient has this ID.
            StorageError: the data folder or the database is full, read-only or cannot be written.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        eye = choice(eye, EYES, "the eye")
        modality = choice(modality, MODALITIES, "the modality")
        taken_on = calendar_date(exam_date, "the exam date") or date.today()
        actor = _actor(actor)
        png = png_bytes(pixels)
        # Fail on an unknown patient before any file is written.
        self.get_patient(pseudo_id)
        sha256, created = self._images.put_new(png)
        try:
            return self._insert_exam(pseudo_id, eye, taken_on, modality, sha256, actor)
        except BaseException:
            if created and not self._image_named(sha256):
                self._images.discard(sha256)
            raise

    def _image_named(self, sha256: str) -> bool:
        """Whether an exam row names this image (another writer may have stored the same photograph)."""
        try:
            with self._read() as session:
                return session.scalar(select(ExamRow.id).where(ExamRow.image_sha256 == sha256).limit(1)) is not None
        except OperationalError:
            return False

    def _insert_exam(self, pseudo_id: str, eye: str, taken_on: date, modality: str, sha256: str,
                     actor: str) -> ExamRecord:
        with self._write() as session:
            patient = patient_row(session, pseudo_id)
            row = ExamRow(
                patient_id=patient.id,
                eye=eye,
                exam_date=taken_on,
                modality=modality,
                image_sha256=sha256,
                created_at=utc_now(),
            )
            session.add(row)
            session.flush()
            append_event(
                session,
                "created",
                actor,
                patient_id=patient.id,
                object_type="exam",
                object_id=row.id,
                details={"eye": eye, "modality": modality, "image_sha256": sha256},
            )
            return to_record(ExamRecord, row, pseudo_id=pseudo_id)

    def exams(self, pseudo_id: str) -> list[ExamRecord]:
        """Return a patient's exams, right eye (OD) before left (OS), each eye oldest first."""
        pseudo_id = checked_pseudo_id(pseudo_id)
        with self._read() as session:
            patient = patient_row(session, pseudo_id)
            rows = session.scalars(
                select(ExamRow)
                .where(ExamRow.patient_id == patient.id)
                .order_by(ExamRow.eye, ExamRow.exam_date, ExamRow.id)
            )
            return [to_record(ExamRecord, row, pseudo_id=pseudo_id) for row in rows]

    def add_analysis(
        self,
        exam_id: int,
        *,
        model_sha256: str,
        model_name: str,
        method: str,
        layer: str,
        target: str,
        prediction: str,
        confidence: float,
        probabilities: Mapping[str, float],
        cam: np.ndarray,
        attention: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> AnalysisRecord:
        """Store a model's prediction and class-activation map for an exam."""
        columns = analysis_columns(
            model_sha256=model_sha256,
            model_name=model_name,
            method=method,
            layer=layer,
            target=target,
            prediction=prediction,
            confidence=confidence,
            probabilities=probabilities,
            cam=cam,
            attention=attention,
        )
        actor = _actor(actor)
        with self._write() as session:
            exam = exam_row(session, exam_id)
            row = AnalysisRow(exam_id=exam.id, created_at=utc_now(), **columns)
            session.add(row)
            session.flush()
            audited = ("model_sha256", "method", "layer", "target", "prediction", "confidence")
            append_event(
                session,
                "explained",
                actor,
                patient_id=exam.patient_id,
                object_type="analysis",
                object_id=row.id,
                details={"exam_id": exam.id, **{key: columns[key] for key in audited}},
            )
            return analysis_record(row)

    def latest_analysis(self, exam_id: int) -> AnalysisRecord | None:
        """Return the most recently stored analysis of an exam, or None if it has none."""
        with self._read() as session:
            exam = exam_row(session, exam_id)
            row = session.scalars(
                select(AnalysisRow).where(AnalysisRow.exam_id == exam.id).order_by(AnalysisRow.id.desc()).limit(1)
            ).first()
            return None if row is None else analysis_record(row)

    # Reviews ----------------------------------------------------------------------------------

    def save_review(
        self,
        exam_id: int,
        *,
        reviewer: str,
        agrees: bool,
        finding: str,
        grade: str,
        notes: str = "",
        actor: str | None = None,
        review_id: int | None = None,
    ) -> ReviewRecord:
        """Save a clinician's review of an exam.

        Without ``review_id``, the unsigned latest review is updated in place, or, when the latest
        is signed or there is none, a new version is added that supersedes it. With ``review_id``
        (the review a form was showing), that review is edited, and ReviewLocked is raised if it
        has been signed meanwhile.
        """
        content = reviews.review_content(reviewer=reviewer, agrees=agrees, finding=finding, grade=grade, notes=notes)
        actor = content["reviewer"] if actor is None else _actor(actor)
        with self._write() as session:
            exam = exam_row(session, exam_id, lock=True)
            row = reviews.save(session, exam, content, review_id)
            append_event(
                session,
                "reviewed",
                actor,
                patient_id=exam.patient_id,
                object_type="review",
                object_id=row.id,
                details={
                    "exam_id": exam.id,
                    "version": row.version,
                    "agrees": row.agrees,
                    "finding": content["finding"],
                    "grade": content["grade"],
                },
            )
            return to_record(ReviewRecord, row)

    def sign_review(self, review_id: int, *, reviewer: str) -> ReviewRecord:
        """Sign a review as ``reviewer``: record the UTC time and lock the review against edits."""
        reviewer = required_text(reviewer, "the reviewer", 128)
        review_id = row_id(review_id, "a review ID")
        with self._write() as session:
            row, exam = reviews.sign(session, review_id, reviewer)
            append_event(
                session,
                "signed",
                reviewer,
                patient_id=exam.patient_id,
                object_type="review",
                object_id=row.id,
                details={"exam_id": exam.id, "version": row.version},
            )
            return to_record(ReviewRecord, row)

    def review_history(self, exam_id: int) -> list[ReviewRecord]:
        """Return every version of an exam's review, oldest first."""
        with self._read() as session:
            exam = exam_row(session, exam_id)
            return [to_record(ReviewRecord, row) for row in reviews.history(session, exam)]

    def latest_review(self, exam_id: int) -> ReviewRecord | None:
        """Return the latest version of an exam's review, or None if it has not been reviewed."""
        history = self.review_history(exam_id)
        return history[-1] if history else None

    # Worklist and audit -----------------------------------------------------------------------

    def worklist(self, *, search: str | None = None, status: str | None = None) -> list[WorklistRow]:
        """Return one row per patient by pseudonymous ID, optionally only those with ``status``.

        Each eye shows the latest analysis of its most recent analysed exam. The status is
        "signed" when every exam's latest review is signed, "reviewed" when every exam has a
        review, and "unreviewed" otherwise (including a patient with no exams).
        """
        if status is not None:
            status = choice(status, WORKLIST_STATUSES, "the review status")
        patients_query = _patients_query(search)
        with self._read() as session:
            return worklist_rows(session, patients_query, status)

    def log(
        self,
        action: str,
        *,
        actor: str,
        patient_pseudo_id: str | None = None,
        object_type: str | None = None,
        object_id: int | str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit event such as an export or a view; details hold no names or images."""
        event = checked_event(action, actor=actor, object_type=object_type, object_id=object_id, details=details)
        pseudo_id = None if patient_pseudo_id is None else checked_pseudo_id(patient_pseudo_id)
        with self._write() as session:
            patient_id = None if pseudo_id is None else patient_row(session, pseudo_id).id
            append_event(session, patient_id=patient_id, **event)

    def audit_trail(self, pseudo_id: str | None = None) -> list[AuditEvent]:
        """Return audit events oldest first, all of them or those about one patient."""
        with self._read() as session:
            patient_id = None if pseudo_id is None else patient_row(session, checked_pseudo_id(pseudo_id)).id
            return events(session, patient_id)
