"""RecordStore: the one object callers use, composing the database, the image folder and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import Select, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from components.base import config, oplog
from components.base.errors import StorageError
from components.base.files import atomic_write_bytes
from components.lens.attention import AttentionResult
from components.records import reviews
from components.records.access import require_role, roles_of
from components.records.analyses import analysis_columns, analysis_record
from components.records.anchor import Anchor, AnchorError, AnchorPoint, check_anchor, configured_anchor, now_point
from components.records.audit_trail import append_event, checked_event, events, sealed
from components.records.backup import read_backup, write_backup
from components.records.chain import ChainReport, verify_chain
from components.records.errors import AlreadyExists, PermissionDenied, SignInTooOld, ValidationError, storage_error
from components.records.identity import ROLES, SYSTEM, Identity, as_identity, given_identity
from components.records.images import png_bytes
from components.records.migrations import open_schema
from components.records.model import (
    AnalysisRecord,
    AuditEvent,
    ExamRecord,
    PatientRecord,
    ReviewRecord,
    WorklistRow,
    to_record,
)
from components.records.objects import image_store
from components.records.rights import erase_rows, jsonable, last_activity, retention_years, years_before
from components.records.schema import (
    AnalysisRow,
    AuditHeadRow,
    ExamRow,
    PatientRow,
    SignInSessionRow,
    UserRoleRow,
    exam_row,
    new_seal_key,
    next_row_id,
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
    row_id,
    sha256_hex,
    text,
)
from components.records.validation import (
    pseudo_id as checked_pseudo_id,
)
from components.records.worklist import worklist_rows
from components.screening.vocabulary import EYES, MODALITIES, WORKLIST_STATUSES

__all__ = ["RecordStore"]

# Who grants the first admin: the operator at the server, who can reach the database anyway.
_COMMAND_LINE = Identity.unauthenticated("server command line")
_TAKEN = "a patient with this pseudonymous ID already exists; choose another ID"


DEFAULT_SIGN_FRESH_MINUTES: Final = 5.0
_SEEN_STEP: Final = timedelta(seconds=30)  # a session's last activity is written at most this often
_WRITERS: Final = ("clinician",)  # who adds and changes patients and photographs (PERMISSIONS["review"])


def _actor(actor: object) -> Identity:
    return as_identity(actor)


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
    SchemaVersionError, PermissionDenied) or, when nothing can be written, the project's StorageError;
    all are CataractCamErrors and ValueErrors, and never quote a name, a birth date or an ID.
    """

    def __init__(self, url: str | None = None, *, data_dir: Path | None = None, require_sign_in: bool = False,
                 anchor: Anchor | None = None) -> None:
        if not isinstance(require_sign_in, bool):
            raise TypeError("require_sign_in must be True or False")
        # With sign-in required, a typed name may not write a review, sign, erase or grant roles.
        self.require_sign_in: bool = require_sign_in
        # With sign-in required, how old a signer's sign-in may be (CATARACT_CAM_SIGN_FRESH_MINUTES, default 5).
        minutes = config.number(config.SIGN_FRESH_MINUTES, 0.1, 1440, unit="minutes")
        self.sign_fresh: timedelta | None = timedelta(
            minutes=DEFAULT_SIGN_FRESH_MINUTES if minutes is None else minutes)
        # Where the chain's head goes after each signature, outside the database (CATARACT_CAM_ANCHOR).
        self.anchor: Anchor | None = anchor if anchor is not None else configured_anchor()
        folder = Path(data_dir) if data_dir is not None else configured_data_dir()
        self.data_dir: Path = ensure_folder(folder)
        self.images_dir: Path = self.data_dir / IMAGES_FOLDER
        self._images = image_store(self.images_dir)
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
                    open_schema(connection)
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
                said = session.info.pop("oplog", [])
        except OperationalError as error:
            problem = storage_error(error)
            oplog.error("records_write_failed", problem)
            raise problem from None
        for line in said:  # committed: now the operator's log may say it happened
            issuer, subject = line.pop("issuer"), line.pop("subject")
            oplog.event(str(line.pop("action")), issuer=issuer, subject=subject, **line)

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
        actor: Identity = SYSTEM,
    ) -> PatientRecord:
        """Create a patient under a new pseudonymous ID.

        Raises:
            ValidationError: a value is not one the store accepts.
            PermissionDenied: ``actor`` is not a clinician (or not signed in where sign-in is required).
            AlreadyExists: another patient has this ID.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        values = patient_values({"name": name, "birth_date": birth_date, "sex": sex})
        actor = _actor(actor)
        try:
            with self._write() as session:
                require_role(session, actor, _WRITERS, "add a patient", sign_in=self.require_sign_in)
                if session.scalar(select(PatientRow.id).where(PatientRow.pseudo_id == pseudo_id)) is not None:
                    raise AlreadyExists(_TAKEN)
                row = PatientRow(id=next_row_id(session, "patients"), pseudo_id=pseudo_id, created_at=utc_now(),
                                 seal_key=new_seal_key(), **values)
                session.add(row)
                session.flush()
                append_event(session, "created", actor, patient_id=row.id, object_type="patient", object_id=row.id,
                             details={"facts": sealed(session, "patient", row, row.id)})
                return to_record(PatientRecord, row)
        except IntegrityError:
            # Another process created the same ID between our check and our insert.
            raise AlreadyExists(_TAKEN) from None

    def get_patient(self, pseudo_id: str) -> PatientRecord:
        """Return the patient with this pseudonymous ID."""
        pseudo_id = checked_pseudo_id(pseudo_id)
        with self._read() as session:
            return to_record(PatientRecord, patient_row(session, pseudo_id))

    def update_patient(self, pseudo_id: str, /, *, actor: Identity, **fields: Any) -> PatientRecord:
        """Change name, birth_date or sex; the audit event names the fields, never their values.

        Raises:
            ValidationError: a value is not one the store accepts.
            PermissionDenied: ``actor`` is not a clinician (or not signed in where sign-in is required).
            NotFound: no patient has this ID.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        actor = _actor(actor)
        values = patient_values(fields)
        with self._write() as session:
            require_role(session, actor, _WRITERS, "change a patient", sign_in=self.require_sign_in)
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
                    details={"fields": changed, "facts": sealed(session, "patient", row, row.id)},
                )
            return to_record(PatientRecord, row)

    def open_patient(self, pseudo_id: str, *, viewer: Identity) -> PatientRecord:
        """Return a patient for someone to look at, and log the view as an audit entry.

        Raises:
            TypeError: ``viewer`` is neither an Identity nor a name.
            PermissionDenied: the viewer holds no role (or is not signed in where required).
            NotFound: no patient has this pseudonymous ID.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        identity = _actor(viewer)
        with self._write() as session:
            require_role(session, identity, ROLES, "open a patient", sign_in=self.require_sign_in)
            row = patient_row(session, pseudo_id)
            append_event(session, "viewed", identity, patient_id=row.id, object_type="patient", object_id=row.id,
                         details={})
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
        actor: Identity = SYSTEM,
    ) -> ExamRecord:
        """Store a photograph of one eye (the file before the row naming it) and return the exam.

        Both are kept or neither: when the row cannot be inserted, a file this call created is removed.

        Raises:
            ValidationError: a value is not one the store accepts.
            PermissionDenied: ``actor`` is not a clinician (or not signed in where sign-in is required).
            NotFound: no patient has this ID.
            StorageError: the data folder or the database is full, read-only or cannot be written.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        eye = choice(eye, EYES, "the eye")
        modality = choice(modality, MODALITIES, "the modality")
        taken_on = calendar_date(exam_date, "the exam date") or date.today()
        actor = _actor(actor)
        png = png_bytes(pixels)
        # Fail on a writer without the role, or an unknown patient, before any file is written.
        with self._read() as session:
            require_role(session, actor, _WRITERS, "add a photograph", sign_in=self.require_sign_in)
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
                     actor: Identity) -> ExamRecord:
        with self._write() as session:
            require_role(session, actor, _WRITERS, "add a photograph", sign_in=self.require_sign_in)
            patient = patient_row(session, pseudo_id)
            row = ExamRow(
                id=next_row_id(session, "exams"),
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
                # No image digest: an erased patient's entries must not point at their photographs.
                details={"eye": eye, "modality": modality, "facts": sealed(session, "exam", row, patient.id)},
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
        attention: AttentionResult | None = None,
        actor: Identity = SYSTEM,
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
            # Any role may record the model's analysis of what it opened (a viewer's look computes it).
            require_role(session, actor, ROLES, "record an analysis", sign_in=self.require_sign_in)
            exam = exam_row(session, exam_id)
            row = AnalysisRow(id=next_row_id(session, "analyses"), exam_id=exam.id, created_at=utc_now(), **columns)
            session.add(row)
            session.flush()
            # Which model and method, written out; the prediction and its confidence are sealed only.
            audited = ("model_sha256", "method", "layer")
            append_event(
                session,
                "explained",
                actor,
                patient_id=exam.patient_id,
                object_type="analysis",
                object_id=row.id,
                details={"exam_id": exam.id, **{key: columns[key] for key in audited},
                         "facts": sealed(session, "analysis", row, exam.patient_id)},
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
        agrees: bool,
        finding: str,
        grade: str,
        notes: str = "",
        author: Identity,
        review_id: int | None = None,
    ) -> ReviewRecord:
        """Save a clinician's review of an exam as a new version; no earlier version is changed.

        ``author`` is the identity writing it; an unauthenticated one (a typed name) is refused when the
        store requires sign-in. With ``review_id``
        (the draft a form was showing), that draft must still be the latest, unsigned version.

        Raises:
            TypeError: ``author`` is not an Identity.
            ValidationError: a value is not accepted.
            PermissionDenied: the author may not write reviews.
            ReviewLocked: the draft ``review_id`` was signed or superseded meanwhile.
        """
        content = reviews.review_content(agrees=agrees, finding=finding, grade=grade, notes=notes)
        writer = given_identity(author, "author")
        with self._write() as session:
            require_role(session, writer, ("clinician",), "write a review", sign_in=self.require_sign_in)
            exam = exam_row(session, exam_id, lock=True)
            row = reviews.save(session, exam, content, writer, review_id)
            # The finding and grade are sealed, not written out: after an erasure only counts remain.
            details = {"exam_id": exam.id, "version": row.version, "facts": sealed(session, "review", row,
                                                                                  exam.patient_id)}
            append_event(session, "reviewed", writer, patient_id=exam.patient_id, object_type="review",
                         object_id=row.id, details=details)
            return to_record(ReviewRecord, row)

    def sign_review(self, review_id: int, *, signer: Identity) -> ReviewRecord:
        """Sign the latest version of a review as ``signer``: record the time, lock it, chain its hash.

        The signer is kept apart from the author; an unauthenticated signer (a typed name) is refused
        when the store requires sign-in.

        Raises:
            TypeError: ``signer`` is not an Identity.
            PermissionDenied: the signer is not a clinician (or not signed in where required).
            SignInTooOld: sign-in is required and the signer's is older than ``sign_fresh`` (or of unknown age).
            NotFound: no review has this ID.
            ReviewLocked: the review is signed already or a newer version exists.
        """
        identity = given_identity(signer, "signer")
        review_id = row_id(review_id, "a review ID")
        with self._write() as session:
            require_role(session, identity, ("clinician",), "sign a review", sign_in=self.require_sign_in)
            self._check_fresh(identity)
            row, exam = reviews.sign(session, review_id, identity)
            append_event(session, "signed", identity, patient_id=exam.patient_id, object_type="review",
                         object_id=row.id,
                         details={"exam_id": exam.id, "version": row.version, "content_hash": row.content_hash,
                                  "facts": sealed(session, "review", row, exam.patient_id)})
            signed = to_record(ReviewRecord, row)
        if self.anchor is not None:
            try:
                self.anchor_head()
            except StorageError as error:
                raise StorageError(f"The review is signed, but the chain's anchor was not written ({error}) "
                                   "Run `cataract-cam records anchor` once it can be.") from None
        return signed

    def _check_fresh(self, signer: Identity) -> None:
        # 21 CFR Part 11 §11.200: a signature outside one continuous session of controlled access, or
        # long after the last proof of identity, asks for that proof again.
        if not self.require_sign_in or self.sign_fresh is None:
            return
        if signer.authenticated_at is None:
            raise SignInTooOld("sign in again to sign: the time of your sign-in is not known")
        age = utc_now() - signer.authenticated_at
        if age > self.sign_fresh:
            minutes = self.sign_fresh.total_seconds() / 60
            raise SignInTooOld(f"sign in again to sign: your sign-in is {age.total_seconds() / 60:.0f} minutes old, "
                               f"and a signature takes one at most {minutes:g} minutes old")

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
        actor: Identity,
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

    # Sign-in sessions -------------------------------------------------------------------------

    def session_ended(self, session_id: str, identity: Identity, *, idle: timedelta, longest: timedelta,
                      now: datetime | None = None) -> str | None:
        """Why the signed-in session ``session_id`` has ended, or None while it goes on (it is then marked active).

        A session unknown so far begins now (at ``identity.authenticated_at``, else now). It ends when
        signed out, after ``idle`` without activity, or ``longest`` after its sign-in: then the reason
        is kept, and every later look at the same ID (a copied cookie) gets it.

        Raises:
            ValidationError: ``session_id`` is not a SHA-256 digest or ``identity`` is not signed in.
        """
        session_id = sha256_hex(session_id, "a session ID")
        if not identity.authenticated:
            raise ValidationError("only a signed-in identity has a sign-in session")
        now = now or utc_now()
        with self._read() as session:  # most runs change nothing: no write lock for them
            seen = session.get(SignInSessionRow, session_id)
            if seen is not None and (seen.ended_at is not None or (
                    now - seen.last_seen <= _SEEN_STEP and now - seen.started_at <= longest)):
                return seen.end_reason
        with self._write() as session:
            row = session.get(SignInSessionRow, session_id)
            began = row is None
            if row is None:
                started = identity.authenticated_at or now
                row = SignInSessionRow(id=session_id, issuer=identity.issuer, subject=identity.subject,
                                       started_at=started, last_seen=now)
                session.add(row)
            if row.ended_at is None:
                if now - row.started_at > longest:
                    row.ended_at, row.end_reason = now, "expired"
                elif now - row.last_seen > idle:
                    row.ended_at, row.end_reason = now, "idle"
                elif now - row.last_seen > _SEEN_STEP:
                    row.last_seen = now
                ended = row.end_reason
            else:
                ended = None
            reason = row.end_reason
        if began:
            oplog.event("signed_in", issuer=identity.issuer, subject=identity.subject)
        if ended is not None:
            oplog.event("session_ended", issuer=identity.issuer, subject=identity.subject, status=ended)
        return reason

    def end_session(self, session_id: str, *, now: datetime | None = None) -> None:
        """End a signed-in session (sign-out): the same ID never opens a session again."""
        session_id = sha256_hex(session_id, "a session ID")
        with self._write() as session:
            row = session.get(SignInSessionRow, session_id)
            who = None
            if row is not None and row.ended_at is None:
                row.ended_at, row.end_reason = now or utc_now(), "signed out"
                who = (row.issuer, row.subject)
        if who is not None:
            oplog.event("signed_out", issuer=who[0], subject=who[1])

    def roles_of(self, identity: Identity) -> frozenset[str]:
        """The roles of a signed-in identity: the allow-list's grants plus its claim's role.

        Raises:
            TypeError: ``identity`` is not an Identity.
        """
        identity = given_identity(identity, "identity")
        with self._read() as session:
            return roles_of(session, identity)

    def grant_role(self, identity: Identity, role: str, *, actor: Identity | None) -> None:
        """Add ``role`` for ``identity`` to the allow-list.

        ``actor`` must be an admin; ``None`` (the server's command line) may only grant while the
        allow-list holds no admin yet, to name the first one.

        Raises:
            TypeError: ``identity`` or ``actor`` is not an Identity.
            ValidationError: the role is unknown or ``identity`` is not signed in.
            PermissionDenied: ``actor`` may not grant roles.
        """
        identity = given_identity(identity, "identity")
        role = choice(role, ROLES, "the role")
        if not identity.authenticated:
            raise ValidationError("roles are granted to signed-in identities only")
        granter = _COMMAND_LINE if actor is None else given_identity(actor, "actor")
        with self._write() as session:
            bootstrap = actor is None and session.scalar(select(UserRoleRow).where(UserRoleRow.role == "admin")) is None
            if not bootstrap and "admin" not in roles_of(session, granter):
                raise PermissionDenied("only an admin may grant roles")
            key = {"issuer": identity.issuer, "subject": identity.subject, "role": role}
            if session.get(UserRoleRow, (identity.issuer, identity.subject, role)) is None:
                session.add(UserRoleRow(**key))
                append_event(session, "granted", granter, patient_id=None, object_type="role", object_id=None,
                             details=key)

    # The patient's rights --------------------------------------------------------------------

    def export_patient(self, pseudo_id: str, folder: Path, *, actor: Identity,
                       files: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        """Write everything held on one patient into ``folder``: ``patient.json``, its photographs
        as ``images/<sha256>.png`` and each class-activation map as ``maps/analysis-<id>.npy``;
        return the JSON document. ``files``: more files by name (such as the PDF report), written
        with them. The export is logged once every file is written.

        Raises:
            PermissionDenied: ``actor`` is neither a clinician nor an admin.
            NotFound: no patient has this ID.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        identity = _actor(actor)
        with self._read() as session:
            require_role(session, identity, ("clinician", "admin"), "export a patient", sign_in=self.require_sign_in)
        exams = self.exams(pseudo_id)
        analyses = [a for exam in exams for a in self._analyses(exam.id)]
        document = {
            "patient": self.get_patient(pseudo_id),
            "exams": exams,
            "analyses": analyses,
            "reviews": [r for exam in exams for r in self.review_history(exam.id)],
            "audit": self.audit_trail(pseudo_id),
        }
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "maps").mkdir(exist_ok=True)
        for exam in exams:
            atomic_write_bytes(folder / "images" / f"{exam.image_sha256}.png", self._images.read(exam.image_sha256))
        for analysis in analyses:
            np.save(folder / "maps" / f"analysis-{analysis.id}.npy", analysis.cam, allow_pickle=False)
        plain = jsonable(document)
        atomic_write_bytes(folder / "patient.json", json.dumps(plain, indent=1, sort_keys=True).encode())
        for name, content in (files or {}).items():
            if Path(name).name != name or name in ("", ".", "..", "patient.json"):
                raise ValidationError("an extra export file must be a plain file name other than patient.json")
            atomic_write_bytes(folder / name, content)
        self.log("exported", actor=identity, patient_pseudo_id=pseudo_id, object_type="patient_export",
                 details={"exams": len(exams), "analyses": len(analyses)})
        return dict(plain)

    def _analyses(self, exam_id: int) -> list[AnalysisRecord]:
        with self._read() as session:
            rows = session.scalars(select(AnalysisRow).where(AnalysisRow.exam_id == exam_id).order_by(AnalysisRow.id))
            return [analysis_record(row) for row in rows]

    def erase_patient(self, pseudo_id: str, *, actor: Identity) -> dict[str, int]:
        """Erase a patient: rows, photographs no other patient shares; return what was removed.

        The audit trail keeps its entries (they hold a row ID that names nobody once the patient is
        gone) and gains an "erased" entry with counts only, so the chain still verifies.

        Raises:
            PermissionDenied: ``actor`` is not an admin (or not signed in where required).
            NotFound: no patient has this ID.
        """
        pseudo_id = checked_pseudo_id(pseudo_id)
        identity = _actor(actor)
        with self._write() as session:
            require_role(session, identity, ("admin",), "erase a patient", sign_in=self.require_sign_in)
            patient = patient_row(session, pseudo_id)
            counts, images = erase_rows(session, patient)
            append_event(session, "erased", identity, patient_id=patient.id, object_type="patient",
                         object_id=patient.id, details={**counts, "images": len(images)})
        for sha256 in sorted(images):
            self._images.delete(sha256)
        self._compact()
        return {**counts, "images": len(images)}

    def _compact(self) -> None:
        # Deleted rows must not linger: SQLite's write-ahead log and PostgreSQL's dead tuples.
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                connection.exec_driver_sql("VACUUM patients, exams, analyses, reviews")

    def past_retention(self, years: int | None = None, *, today: date | None = None) -> list[tuple[str, date]]:
        """Patients whose last exam (or creation, without exams) is more than ``years`` before today.

        ``years`` defaults to the retention setting ($CATARACT_CAM_RETENTION_YEARS, else 10).

        Raises:
            TypeError: ``years`` is not an integer.
            ValueError: ``years`` is not from 1 to 100, or the setting is malformed.
        """
        if years is not None and (isinstance(years, bool) or not isinstance(years, int)):
            raise TypeError("years must be an integer")
        years = retention_years() if years is None else years
        if not 1 <= years <= 100:
            raise ValidationError("the retention period must be from 1 to 100 years")
        with self._read() as session:
            return last_activity(session, years_before(today or date.today(), years))

    def backup(self, folder: Path) -> int:
        """Write every row (``records.jsonl``) and every photograph (``images/``) into ``folder``; return the rows.

        Raises:
            OSError: the folder cannot be written.
        """
        with self._read() as session:
            return write_backup(session.connection(), self._images, folder)

    def restore(self, folder: Path) -> int:
        """Restore a backup made by ``backup`` into this store, whose database must be empty; return the rows.

        Raises:
            RecordsError: not a backup, a damaged photograph, or this database is not empty.
            OSError: the backup cannot be read.
        """
        with self._write() as session:
            return read_backup(session.connection(), self._images, folder)

    def verify(self, anchor: Anchor | None = None) -> ChainReport:
        """Walk the audit chain, check every signed review and fact; the report names the first problem.

        With ``anchor``, every point it holds must still be in the chain, so a database rewritten as a
        whole (its chain rebuilt) or cut back to an older copy fails too.

        Raises:
            AnchorError: the anchor cannot be read or holds something that is no anchor point.
        """
        points = anchor.read() if anchor is not None else []
        with self._read() as session:
            report = verify_chain(session)
            if report.ok and points:
                return ChainReport(report.entries, report.signed_reviews, check_anchor(session, points))
            return report

    def anchor_head(self) -> AnchorPoint:
        """Write the chain's head (sequence number and hash) to the configured anchor now, and return it.

        Raises:
            AnchorError: no anchor is configured (``CATARACT_CAM_ANCHOR``).
            StorageError: the anchor cannot be written.
        """
        if self.anchor is None:
            raise AnchorError(f"No anchor is configured: set {config.ANCHOR.name} to a file or s3://bucket/prefix.")
        with self._read() as session:
            head = session.get_one(AuditHeadRow, 1)
            point = now_point(head.seq, head.hash)
        self.anchor.write(point)
        return point

    def audit_trail(self, pseudo_id: str | None = None) -> list[AuditEvent]:
        """Return audit events oldest first, all of them or those about one patient."""
        with self._read() as session:
            patient_id = None if pseudo_id is None else patient_row(session, checked_pseudo_id(pseudo_id)).id
            return events(session, patient_id)
