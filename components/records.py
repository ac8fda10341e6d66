"""Patient records for the dashboard: patients, eye exams, analyses, signed reviews, audit trail."""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
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
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from components.files import atomic_write_bytes
from components.imaging import ImageError, encode_png, load_rgb, sha256_bytes

__all__ = [
    "AUDIT_ACTIONS",
    "DATA_DIR_ENV",
    "DB_URL_ENV",
    "EYES",
    "FINDINGS",
    "GRADES",
    "MODALITIES",
    "SCHEMA_VERSION",
    "SEXES",
    "WORKLIST_STATUSES",
    "AlreadyExists",
    "AnalysisRecord",
    "AuditEvent",
    "ExamRecord",
    "NotFound",
    "PatientRecord",
    "RecordStore",
    "RecordsError",
    "ReviewLocked",
    "ReviewRecord",
    "SchemaVersionError",
    "ValidationError",
    "WorklistRow",
    "data_dir",
]

SCHEMA_VERSION: Final = 1
DATA_DIR_ENV: Final = "CATARACT_CAM_DATA"
DB_URL_ENV: Final = "CATARACT_CAM_DB_URL"

EYES: Final = ("OD", "OS")
MODALITIES: Final = ("external", "slit_lamp", "fundus")
SEXES: Final = ("F", "M", "X")
FINDINGS: Final = ("normal", "cataract")
GRADES: Final = ("none", "mild", "moderate", "severe")
REVIEW_STATUSES: Final = ("reviewed", "signed")
WORKLIST_STATUSES: Final = ("unreviewed", "reviewed", "signed")
AUDIT_ACTIONS: Final = (
    "created",
    "updated",
    "explained",
    "reviewed",
    "signed",
    "exported",
    "viewed",
    "deleted",
)
PATIENT_FIELDS: Final = ("name", "birth_date", "sex")

_PSEUDO_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OBJECT_TYPE = re.compile(r"[a-z][a-z_]{0,31}")
# Audit details describe what happened, never who the patient is or what the image showed.
_FORBIDDEN_DETAIL_KEYS: Final = frozenset({"name", "birth_date", "image", "pixels", "png", "cam"})
_MAX_DETAIL_TEXT: Final = 256
_MAX_DETAILS_JSON: Final = 4096
# Execution option that makes a SQLite transaction take the write lock at BEGIN.
_WRITE_OPTION: Final = "cataract_cam_write"


class RecordsError(ValueError):
    """A records operation could not be done as asked."""


class ValidationError(RecordsError):
    """A value given to the record store is not one it accepts."""


class NotFound(RecordsError):
    """The patient, exam, review or image asked for is not stored."""


class AlreadyExists(RecordsError):
    """A record with the same unique key is already stored."""


class ReviewLocked(RecordsError):
    """A signed review was about to be changed; signed reviews are kept as they were signed."""


class SchemaVersionError(RecordsError):
    """The database was written with a schema this program cannot read."""


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
    attention: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class ReviewRecord:
    """One version of a clinician's review of an exam."""

    id: int
    exam_id: int
    version: int
    supersedes: int | None
    reviewer: str
    agrees: bool
    finding: str
    grade: str
    notes: str
    status: str
    signed_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit trail."""

    id: int
    time: datetime
    actor: str
    action: str
    patient_pseudo_id: str | None
    object_type: str | None
    object_id: str | None
    details: dict[str, Any]


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


class _UTCDateTime(TypeDecorator[datetime]):
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


class _JSONText(TypeDecorator[Any]):
    """Strict JSON stored as text, which every SQL database can hold."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class _Base(DeclarativeBase):
    pass


class _SchemaVersionRow(_Base):
    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class _PatientRow(_Base):
    __tablename__ = "patients"
    __table_args__ = (CheckConstraint("sex IN ('F', 'M', 'X')", name="ck_patients_sex"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudo_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime())


class _ExamRow(_Base):
    __tablename__ = "exams"
    __table_args__ = (
        CheckConstraint("eye IN ('OD', 'OS')", name="ck_exams_eye"),
        CheckConstraint(
            "modality IN ('external', 'slit_lamp', 'fundus')", name="ck_exams_modality"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    eye: Mapped[str] = mapped_column(String(2))
    exam_date: Mapped[date] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(16))
    image_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime())


class _AnalysisRow(_Base):
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
    probabilities: Mapped[dict[str, float]] = mapped_column(_JSONText())
    cam: Mapped[bytes] = mapped_column(LargeBinary)
    attention: Mapped[dict[str, Any] | None] = mapped_column(_JSONText())
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime())


class _ReviewRow(_Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("exam_id", "version", name="uq_reviews_exam_version"),
        CheckConstraint("finding IN ('normal', 'cataract')", name="ck_reviews_finding"),
        CheckConstraint("grade IN ('none', 'mild', 'moderate', 'severe')", name="ck_reviews_grade"),
        CheckConstraint("status IN ('reviewed', 'signed')", name="ck_reviews_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    supersedes: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"))
    reviewer: Mapped[str] = mapped_column(String(128))
    agrees: Mapped[bool] = mapped_column(Boolean)
    finding: Mapped[str] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    signed_at: Mapped[datetime | None] = mapped_column(_UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(_UTCDateTime())


class _AuditRow(_Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(_UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(_JSONText())


def _configured_data_dir() -> Path:
    configured = os.environ.get(DATA_DIR_ENV, "")
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def _ensure_folder(folder: Path) -> Path:
    # Patient data is readable by its owner only. mkdir(parents=True) would give missing
    # parents the default mode, so each missing level is made here.
    missing = [level for level in (folder, *folder.parents) if not level.is_dir()]
    for level in reversed(missing):
        level.mkdir(mode=0o700, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Return (and create) the patient data folder: $CATARACT_CAM_DATA or the checkout's data/."""
    return _ensure_folder(_configured_data_dir())


def _now() -> datetime:
    return datetime.now(UTC)


def _fsync_folder(folder: Path) -> None:
    # A rename is durable only once the folder that holds it is synced; Windows cannot open folders.
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _png(pixels: np.ndarray) -> bytes:
    try:
        return encode_png(pixels)
    except ImageError as error:
        raise ValidationError(str(error)) from None


def _sha256_hex(value: object, what: str) -> str:
    if not isinstance(value, str) or _SHA256.fullmatch(value.lower()) is None:
        raise ValidationError(
            f"{what} must be a SHA-256 digest written as 64 hexadecimal characters"
        )
    return value.lower()


def _row_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValidationError(f"{what} must be an integer")
    return int(value)


def _pseudo_id(value: object) -> str:
    if not isinstance(value, str) or _PSEUDO_ID.fullmatch(value) is None:
        raise ValidationError(
            "a pseudonymous ID must be 1 to 64 letters, digits, '-', '_' or '.', with no spaces"
        )
    return value


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"{what} must be one of: {', '.join(allowed)}")
    return value


def _text(value: object, what: str, max_length: int, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValidationError(f"{what} must be at most {max_length} characters")
    return value or None


def _required_text(value: object, what: str, max_length: int) -> str:
    text = _text(value, what, max_length, required=True)
    assert text is not None  # _text raised for an empty required value
    return text


def _date(value: object, what: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        raise ValidationError(f"{what} must be a calendar date, not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(f"{what} must be a date written as YYYY-MM-DD") from None
    raise ValidationError(f"{what} must be a date or text written as YYYY-MM-DD")


def _birth_date(value: object) -> date | None:
    born = _date(value, "the birth date")
    if born is not None and born > date.today():
        raise ValidationError("the birth date must not be in the future")
    return born


def _sex(value: object) -> str | None:
    return None if value is None else _choice(value, SEXES, "sex")


def _unit_float(value: object, what: str) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{what} must be a number between 0 and 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError(f"{what} must be a number between 0 and 1")
    return number


def _plain_json(
    value: object, what: str, *, max_text: int | None, forbidden: frozenset[str], depth: int = 0
) -> Any:
    """Return ``value`` as plain JSON; refuse anything else (bytes, arrays, NaN, deep nesting)."""
    problem = f"{what} must hold only text, numbers, booleans, lists and mappings"
    if depth > 6:
        raise ValidationError(f"{what} must not be nested more than 6 levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValidationError(f"{what} must hold only finite numbers")
        return number
    if isinstance(value, str):
        if max_text is not None and len(value) > max_text:
            raise ValidationError(f"{what} must hold text of at most {max_text} characters")
        return value
    if isinstance(value, list | tuple):
        return [
            _plain_json(item, what, max_text=max_text, forbidden=forbidden, depth=depth + 1)
            for item in value
        ]
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what} must use text keys")
            if key.lower() in forbidden:
                raise ValidationError(f"{what} must not carry names or image data")
            result[key] = _plain_json(
                item, what, max_text=max_text, forbidden=forbidden, depth=depth + 1
            )
        return result
    raise ValidationError(problem)


def _audit_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, Mapping):
        raise ValidationError("audit details must be a mapping")
    plain = _plain_json(
        details, "audit details", max_text=_MAX_DETAIL_TEXT, forbidden=_FORBIDDEN_DETAIL_KEYS
    )
    if len(json.dumps(plain)) > _MAX_DETAILS_JSON:
        raise ValidationError(
            f"audit details must be at most {_MAX_DETAILS_JSON} characters as JSON"
        )
    return plain


def _encode_cam(cam: object) -> bytes:
    array = np.asarray(cam)
    if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValidationError(
            "expected the class-activation map as a non-empty 2-D array of numbers"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValidationError("the class-activation map must hold only finite numbers")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return zlib.compress(buffer.getvalue(), 6)


def _decode_cam(blob: bytes) -> np.ndarray:
    cam = np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)
    cam.setflags(write=False)
    return cam


def _to_record(kind: type[_Record], row: _Base, **computed: Any) -> _Record:
    """Copy a row's columns into a frozen record, so callers never hold ORM objects."""
    shared = {f.name: getattr(row, f.name) for f in fields(kind) if f.name not in computed}
    return kind(**shared, **computed)


def _analysis_record(row: _AnalysisRow) -> AnalysisRecord:
    return _to_record(
        AnalysisRecord, row, probabilities=dict(row.probabilities), cam=_decode_cam(row.cam)
    )


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    # Exceptions then never quote bound values, which may be names or birth dates.
    options: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **options)
    options["connect_args"] = {"check_same_thread": False, "timeout": 30.0}
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or each thread would see its own empty in-memory database.
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock at BEGIN, so a read-then-write never fails half-way
        # because another thread or process wrote in between; readers never wait for it.
        writing = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


class RecordStore:
    """Patients, exams, analyses, reviews and their audit trail: one database, one image folder.

    Every write is one transaction that also appends its audit event. Methods return frozen
    dataclasses, never ORM objects. One store may be shared by the threads of a server.
    """

    def __init__(self, url: str | None = None, *, data_dir: Path | None = None) -> None:
        folder = Path(data_dir) if data_dir is not None else _configured_data_dir()
        self.data_dir: Path = _ensure_folder(folder)
        self.images_dir: Path = self.data_dir / "images"
        database_url = (
            url
            or os.environ.get(DB_URL_ENV, "")
            or f"sqlite:///{self.data_dir / 'records.sqlite3'}"
        )
        # Safe to show on a settings page: a server password is masked.
        self.url: str = make_url(database_url).render_as_string(hide_password=True)
        self._engine = _make_engine(database_url)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            self._create_schema()
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        """Close the database connections; the store must not be used afterwards."""
        self._engine.dispose()

    def _create_schema(self) -> None:
        with self._engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                found: list[int] = []
                if inspect(connection).has_table(_SchemaVersionRow.__tablename__):
                    found = list(connection.scalars(select(_SchemaVersionRow.version)))
                if found and max(found) > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"the records database has schema version {max(found)}, newer than the "
                        f"{SCHEMA_VERSION} this program reads; upgrade the program to open it"
                    )
                _Base.metadata.create_all(connection)
                if not found:
                    connection.execute(insert(_SchemaVersionRow).values(version=SCHEMA_VERSION))

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            session.connection(execution_options={_WRITE_OPTION: True})
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @staticmethod
    def _audit(
        session: Session,
        action: str,
        actor: str,
        *,
        patient_id: int | None,
        object_type: str | None,
        object_id: int | str | None,
        details: dict[str, Any],
    ) -> None:
        session.add(
            _AuditRow(
                time=_now(),
                actor=actor,
                action=action,
                patient_id=patient_id,
                object_type=object_type,
                object_id=None if object_id is None else str(object_id),
                details=details,
            )
        )

    @staticmethod
    def _patient_row(session: Session, pseudo_id: str) -> _PatientRow:
        row = session.scalars(select(_PatientRow).where(_PatientRow.pseudo_id == pseudo_id)).first()
        if row is None:
            raise NotFound("no patient has this pseudonymous ID")
        return row

    @staticmethod
    def _exam_row(session: Session, exam_id: object, *, lock: bool = False) -> _ExamRow:
        query = select(_ExamRow).where(_ExamRow.id == _row_id(exam_id, "an exam ID"))
        # FOR UPDATE serialises review versions on PostgreSQL (BEGIN IMMEDIATE does on SQLite).
        row = session.scalars(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound("no exam has this ID")
        return row

    # Images -----------------------------------------------------------------------------------

    def _image_path(self, sha256: str) -> Path:
        return self.images_dir / sha256[:2] / f"{sha256}.png"

    def put_image(self, pixels: np.ndarray) -> str:
        """Store RGB uint8 pixels as a metadata-free PNG named by its SHA-256; return the digest."""
        return self._put_png(_png(pixels))

    def _put_png(self, png: bytes) -> str:
        sha256 = sha256_bytes(png)
        path = self._image_path(sha256)
        if not path.is_file():
            new_folder = not path.parent.is_dir()
            _ensure_folder(path.parent)
            atomic_write_bytes(path, png)
            # The row naming this file commits next, so the name must first survive a power cut.
            _fsync_folder(path.parent)
            if new_folder:
                _fsync_folder(path.parent.parent)
        return sha256

    def get_image(self, sha256: str) -> np.ndarray:
        """Return the stored image with this SHA-256 as an RGB uint8 array."""
        sha256 = _sha256_hex(sha256, "an image digest")
        try:
            png = self._image_path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(
                "no stored image has this SHA-256; the image folder is incomplete"
            ) from None
        if sha256_bytes(png) != sha256:
            raise RecordsError(
                "a stored image file does not match its SHA-256 name; the file is damaged"
            )
        return load_rgb(png)

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
        pseudo_id = _pseudo_id(pseudo_id)
        values = {
            "name": _text(name, "the name", 200, required=False),
            "birth_date": _birth_date(birth_date),
            "sex": _sex(sex),
        }
        actor = _required_text(actor, "the actor", 128)
        try:
            with self._write() as session:
                taken = session.scalar(
                    select(_PatientRow.id).where(_PatientRow.pseudo_id == pseudo_id)
                )
                if taken is not None:
                    raise AlreadyExists(
                        "a patient with this pseudonymous ID already exists; choose another ID"
                    )
                row = _PatientRow(pseudo_id=pseudo_id, created_at=_now(), **values)
                session.add(row)
                session.flush()
                self._audit(
                    session,
                    "created",
                    actor,
                    patient_id=row.id,
                    object_type="patient",
                    object_id=row.id,
                    details={},
                )
                return _to_record(PatientRecord, row)
        except IntegrityError:
            # Another process created the same ID between our check and our insert.
            raise AlreadyExists(
                "a patient with this pseudonymous ID already exists; choose another ID"
            ) from None

    def get_patient(self, pseudo_id: str) -> PatientRecord:
        """Return the patient with this pseudonymous ID."""
        pseudo_id = _pseudo_id(pseudo_id)
        with self._read() as session:
            return _to_record(PatientRecord, self._patient_row(session, pseudo_id))

    def update_patient(self, pseudo_id: str, /, *, actor: str, **fields: Any) -> PatientRecord:
        """Change name, birth_date or sex; the audit event names the fields, never their values."""
        pseudo_id = _pseudo_id(pseudo_id)
        actor = _required_text(actor, "the actor", 128)
        unknown = sorted(set(fields) - set(PATIENT_FIELDS))
        if unknown:
            raise ValidationError(
                f"only {', '.join(PATIENT_FIELDS)} can be updated, not {', '.join(unknown)}"
            )
        checks = {
            "name": lambda value: _text(value, "the name", 200, required=False),
            "birth_date": _birth_date,
            "sex": _sex,
        }
        values = {key: checks[key](value) for key, value in fields.items()}
        with self._write() as session:
            row = self._patient_row(session, pseudo_id)
            changed = sorted(key for key, value in values.items() if getattr(row, key) != value)
            for key in changed:
                setattr(row, key, values[key])
            if changed:
                self._audit(
                    session,
                    "updated",
                    actor,
                    patient_id=row.id,
                    object_type="patient",
                    object_id=row.id,
                    details={"fields": changed},
                )
            return _to_record(PatientRecord, row)

    def list_patients(self, search: str | None = None) -> list[PatientRecord]:
        """Return patients by pseudonymous ID, optionally those whose ID or name has ``search``."""
        with self._read() as session:
            query = self._patients_query(search).order_by(_PatientRow.pseudo_id)
            return [_to_record(PatientRecord, row) for row in session.scalars(query)]

    @staticmethod
    def _patients_query(search: str | None) -> Any:
        query = select(_PatientRow)
        text = _text(search, "the search", 200, required=False)
        if text:
            query = query.where(
                or_(
                    _PatientRow.pseudo_id.icontains(text, autoescape=True),
                    _PatientRow.name.icontains(text, autoescape=True),
                )
            )
        return query

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
        """Store a photograph of one eye (the file before the row naming it) and return the exam."""
        pseudo_id = _pseudo_id(pseudo_id)
        eye = _choice(eye, EYES, "the eye")
        modality = _choice(modality, MODALITIES, "the modality")
        taken_on = _date(exam_date, "the exam date") or date.today()
        actor = _required_text(actor, "the actor", 128)
        png = _png(pixels)
        # Fail on an unknown patient before any file is written.
        self.get_patient(pseudo_id)
        sha256 = self._put_png(png)
        with self._write() as session:
            patient = self._patient_row(session, pseudo_id)
            row = _ExamRow(
                patient_id=patient.id,
                eye=eye,
                exam_date=taken_on,
                modality=modality,
                image_sha256=sha256,
                created_at=_now(),
            )
            session.add(row)
            session.flush()
            self._audit(
                session,
                "created",
                actor,
                patient_id=patient.id,
                object_type="exam",
                object_id=row.id,
                details={"eye": eye, "modality": modality, "image_sha256": sha256},
            )
            return _to_record(ExamRecord, row, pseudo_id=pseudo_id)

    def exams(self, pseudo_id: str) -> list[ExamRecord]:
        """Return a patient's exams, right eye (OD) before left (OS), each eye oldest first."""
        pseudo_id = _pseudo_id(pseudo_id)
        with self._read() as session:
            patient = self._patient_row(session, pseudo_id)
            rows = session.scalars(
                select(_ExamRow)
                .where(_ExamRow.patient_id == patient.id)
                .order_by(_ExamRow.eye, _ExamRow.exam_date, _ExamRow.id)
            )
            return [_to_record(ExamRecord, row, pseudo_id=pseudo_id) for row in rows]

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
        model_sha256 = _sha256_hex(model_sha256, "the model digest")
        model_name = _required_text(model_name, "the model name", 200)
        method = _required_text(method, "the method", 64)
        layer = _required_text(layer, "the layer", 200)
        target = _required_text(target, "the target class", 64)
        prediction = _required_text(prediction, "the prediction", 64)
        confidence = _unit_float(confidence, "the confidence")
        if not isinstance(probabilities, Mapping) or not probabilities:
            raise ValidationError(
                "the probabilities must be a non-empty mapping of class name to number"
            )
        class_probabilities = {
            _required_text(name, "a class name", 64): _unit_float(value, "a class probability")
            for name, value in probabilities.items()
        }
        cam_blob = _encode_cam(cam)
        if attention is not None and not isinstance(attention, Mapping):
            raise ValidationError("the attention summary must be a mapping")
        attention_json = (
            None
            if attention is None
            else _plain_json(
                attention, "the attention summary", max_text=None, forbidden=frozenset()
            )
        )
        actor = _required_text(actor, "the actor", 128)
        with self._write() as session:
            exam = self._exam_row(session, exam_id)
            row = _AnalysisRow(
                exam_id=exam.id,
                model_sha256=model_sha256,
                model_name=model_name,
                method=method,
                layer=layer,
                target=target,
                prediction=prediction,
                confidence=confidence,
                probabilities=class_probabilities,
                cam=cam_blob,
                attention=attention_json,
                created_at=_now(),
            )
            session.add(row)
            session.flush()
            self._audit(
                session,
                "explained",
                actor,
                patient_id=exam.patient_id,
                object_type="analysis",
                object_id=row.id,
                details={
                    "exam_id": exam.id,
                    "model_sha256": model_sha256,
                    "method": method,
                    "layer": layer,
                    "target": target,
                    "prediction": prediction,
                    "confidence": confidence,
                },
            )
            return _analysis_record(row)

    def latest_analysis(self, exam_id: int) -> AnalysisRecord | None:
        """Return the most recently stored analysis of an exam, or None if it has none."""
        with self._read() as session:
            exam = self._exam_row(session, exam_id)
            row = session.scalars(
                select(_AnalysisRow)
                .where(_AnalysisRow.exam_id == exam.id)
                .order_by(_AnalysisRow.id.desc())
                .limit(1)
            ).first()
            return None if row is None else _analysis_record(row)

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
        reviewer = _required_text(reviewer, "the reviewer", 128)
        if not isinstance(agrees, bool | np.bool_):
            raise ValidationError("agrees must be True or False")
        finding = _choice(finding, FINDINGS, "the finding")
        grade = _choice(grade, GRADES, "the grade")
        if (finding == "normal") != (grade == "none"):
            raise ValidationError(
                "a normal finding takes grade 'none' and a cataract finding takes a grade above it"
            )
        if not isinstance(notes, str) or len(notes) > 10_000:
            raise ValidationError("the notes must be text of at most 10000 characters")
        actor = reviewer if actor is None else _required_text(actor, "the actor", 128)
        content = {
            "reviewer": reviewer,
            "agrees": bool(agrees),
            "finding": finding,
            "grade": grade,
            "notes": notes.strip(),
        }
        with self._write() as session:
            exam = self._exam_row(session, exam_id, lock=True)
            latest = session.scalars(
                select(_ReviewRow)
                .where(_ReviewRow.exam_id == exam.id)
                .order_by(_ReviewRow.version.desc())
                .limit(1)
            ).first()
            if review_id is not None:
                # Only the latest version can be unsigned, so an unsigned one is the latest.
                edited = session.get(_ReviewRow, _row_id(review_id, "a review ID"))
                if edited is None or edited.exam_id != exam.id:
                    raise NotFound("this exam has no review with this ID")
                if edited.status == "signed":
                    raise ReviewLocked(
                        "this review is signed and cannot be changed; save a new version to amend"
                    )
            if latest is None or latest.status == "signed":
                row = _ReviewRow(
                    exam_id=exam.id,
                    version=1 if latest is None else latest.version + 1,
                    supersedes=None if latest is None else latest.id,
                    status="reviewed",
                    signed_at=None,
                    created_at=_now(),
                    **content,
                )
                session.add(row)
                session.flush()
            else:
                row = latest
                for key, value in content.items():
                    setattr(row, key, value)
            self._audit(
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
                    "finding": finding,
                    "grade": grade,
                },
            )
            return _to_record(ReviewRecord, row)

    def sign_review(self, review_id: int, *, reviewer: str) -> ReviewRecord:
        """Sign a review as ``reviewer``: record the UTC time and lock the review against edits."""
        reviewer = _required_text(reviewer, "the reviewer", 128)
        review_id = _row_id(review_id, "a review ID")
        with self._write() as session:
            exam_id = session.scalar(select(_ReviewRow.exam_id).where(_ReviewRow.id == review_id))
            if exam_id is None:
                raise NotFound("no review has this ID")
            # Lock the exam as save_review does, so a save and a signature of one review take turns.
            exam = self._exam_row(session, exam_id, lock=True)
            row = session.get_one(_ReviewRow, review_id)
            if row.status == "signed":
                raise ReviewLocked("this review is already signed; save a new version to amend it")
            row.status = "signed"
            row.reviewer = reviewer
            row.signed_at = _now()
            self._audit(
                session,
                "signed",
                reviewer,
                patient_id=exam.patient_id,
                object_type="review",
                object_id=row.id,
                details={"exam_id": exam.id, "version": row.version},
            )
            return _to_record(ReviewRecord, row)

    def review_history(self, exam_id: int) -> list[ReviewRecord]:
        """Return every version of an exam's review, oldest first."""
        with self._read() as session:
            exam = self._exam_row(session, exam_id)
            rows = session.scalars(
                select(_ReviewRow).where(_ReviewRow.exam_id == exam.id).order_by(_ReviewRow.version)
            )
            return [_to_record(ReviewRecord, row) for row in rows]

    def latest_review(self, exam_id: int) -> ReviewRecord | None:
        """Return the latest version of an exam's review, or None if it has not been reviewed."""
        history = self.review_history(exam_id)
        return history[-1] if history else None

    # Worklist and audit -----------------------------------------------------------------------

    def worklist(
        self, *, search: str | None = None, status: str | None = None
    ) -> list[WorklistRow]:
        """Return one row per patient by pseudonymous ID, optionally only those with ``status``.

        Each eye shows the latest analysis of its most recent analysed exam. The status is
        "signed" when every exam's latest review is signed, "reviewed" when every exam has a
        review, and "unreviewed" otherwise (including a patient with no exams).
        """
        if status is not None:
            status = _choice(status, WORKLIST_STATUSES, "the review status")
        patients_query = self._patients_query(search)
        with self._read() as session:
            patients = list(session.scalars(patients_query.order_by(_PatientRow.pseudo_id)))
            patient_ids = patients_query.with_only_columns(_PatientRow.id).scalar_subquery()
            exams = session.execute(
                select(_ExamRow.id, _ExamRow.patient_id, _ExamRow.eye, _ExamRow.exam_date)
                .where(_ExamRow.patient_id.in_(patient_ids))
                .order_by(_ExamRow.exam_date, _ExamRow.id)
            ).all()
            exam_ids = (
                select(_ExamRow.id).where(_ExamRow.patient_id.in_(patient_ids)).scalar_subquery()
            )
            latest_analysis = (
                select(func.max(_AnalysisRow.id)).group_by(_AnalysisRow.exam_id).scalar_subquery()
            )
            results = {
                row.exam_id: (row.prediction, row.confidence)
                for row in session.execute(
                    select(
                        _AnalysisRow.exam_id, _AnalysisRow.prediction, _AnalysisRow.confidence
                    ).where(
                        _AnalysisRow.id.in_(latest_analysis), _AnalysisRow.exam_id.in_(exam_ids)
                    )
                )
            }
            latest_version = (
                select(_ReviewRow.exam_id, func.max(_ReviewRow.version).label("version"))
                .group_by(_ReviewRow.exam_id)
                .subquery()
            )
            latest_reviews = session.execute(
                select(_ReviewRow.exam_id, _ReviewRow.status)
                .join(
                    latest_version,
                    (_ReviewRow.exam_id == latest_version.c.exam_id)
                    & (_ReviewRow.version == latest_version.c.version),
                )
                .where(_ReviewRow.exam_id.in_(exam_ids))
            )
            review_status = dict(latest_reviews.tuples().all())
        by_patient: dict[int, list[Any]] = {}
        for exam in exams:
            by_patient.setdefault(exam.patient_id, []).append(exam)
        rows = []
        for patient in patients:
            own = by_patient.get(patient.id, [])
            # Exams are oldest first, so the last analysed exam of an eye wins.
            eye_result: dict[str, tuple[str, float]] = {}
            for exam in own:
                if exam.id in results:
                    eye_result[exam.eye] = results[exam.id]
            statuses = [review_status.get(exam.id) for exam in own]
            if not own or None in statuses:
                summary = "unreviewed"
            elif all(value == "signed" for value in statuses):
                summary = "signed"
            else:
                summary = "reviewed"
            if status is not None and summary != status:
                continue
            od = eye_result.get("OD", (None, None))
            os_ = eye_result.get("OS", (None, None))
            rows.append(
                WorklistRow(
                    pseudo_id=patient.pseudo_id,
                    name=patient.name,
                    n_eyes=len({exam.eye for exam in own}),
                    n_exams=len(own),
                    last_exam_date=max((exam.exam_date for exam in own), default=None),
                    od_prediction=od[0],
                    od_confidence=od[1],
                    os_prediction=os_[0],
                    os_confidence=os_[1],
                    review_status=summary,
                )
            )
        return rows

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
        action = _choice(action, AUDIT_ACTIONS, "the audit action")
        actor = _required_text(actor, "the actor", 128)
        if object_type is not None and (
            not isinstance(object_type, str) or not _OBJECT_TYPE.fullmatch(object_type)
        ):
            raise ValidationError(
                "the object type must be 1 to 32 lower-case letters or underscores"
            )
        if object_id is not None and (
            isinstance(object_id, bool)
            or not isinstance(object_id, int | str)
            or len(str(object_id)) > 64
        ):
            raise ValidationError(
                "the object ID must be an integer or text of at most 64 characters"
            )
        plain = _audit_details(details)
        pseudo_id = None if patient_pseudo_id is None else _pseudo_id(patient_pseudo_id)
        with self._write() as session:
            patient_id = None if pseudo_id is None else self._patient_row(session, pseudo_id).id
            self._audit(
                session,
                action,
                actor,
                patient_id=patient_id,
                object_type=object_type,
                object_id=object_id,
                details=plain,
            )

    def audit_trail(self, pseudo_id: str | None = None) -> list[AuditEvent]:
        """Return audit events oldest first, all of them or those about one patient."""
        query = (
            select(_AuditRow, _PatientRow.pseudo_id)
            .outerjoin(_PatientRow, _AuditRow.patient_id == _PatientRow.id)
            .order_by(_AuditRow.id)
        )
        with self._read() as session:
            if pseudo_id is not None:
                patient = self._patient_row(session, _pseudo_id(pseudo_id))
                query = query.where(_AuditRow.patient_id == patient.id)
            return [
                _to_record(
                    AuditEvent, row, patient_pseudo_id=patient_pseudo_id, details=dict(row.details)
                )
                for row, patient_pseudo_id in session.execute(query)
            ]
