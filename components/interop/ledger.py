"""What the clinic's systems were sent: each exam's study UID, kept once, and every send, in the records database.

An exam reads "sent" only once a send of its current review version succeeded; a failed send is
kept with its one-sentence reason and the exam stays "not sent" until a retry succeeds. Each
attempt is also written to the record store's audit trail with what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydicom.dataset import Dataset
from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from components.interop.dicom_objects import build_objects
from components.interop.dicomweb import PacsClient, PacsError
from components.interop.dimse import DimseTarget, c_store, parse_target
from components.interop.exam import SignedExam, new_study_uid
from components.records import Identity, RecordStore
from components.records.settings import data_dir, database_url, make_engine

__all__ = ["NOT_SENT", "SENT", "SendAttempt", "SendLedger", "send_exam"]

SENT = "sent"
NOT_SENT = "not sent"


class _Base(DeclarativeBase):
    pass


class _StudyRow(_Base):
    __tablename__ = "interop_exam_studies"

    exam_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class _SendRow(_Base):
    __tablename__ = "interop_sends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exam_key: Mapped[str] = mapped_column(String(128), index=True)
    review_version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    sop_uids: Mapped[str] = mapped_column(Text)  # space-separated: what the PACS now holds of this send
    error: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime)


class _SourceRow(_Base):
    __tablename__ = "interop_sources"

    pixels_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    header_json: Mapped[str] = mapped_column(Text)


LEDGER_TABLES: Final = _Base.metadata
"""The ledger's tables, which the records' Alembic revision r0004 creates as the database's owner."""


@dataclass(frozen=True)
class SendAttempt:
    """One send of one review version of an exam: where, when, what the PACS holds, or why it failed."""

    exam_key: str
    review_version: int
    target: str
    status: str
    sop_uids: tuple[str, ...]
    error: str | None
    time: datetime


class SendLedger:
    """Per-exam study UIDs and send attempts, beside the records (the same database by default)."""

    def __init__(self, url: str | None = None, *, folder: Path | None = None) -> None:
        """Opens (and creates) the two tables; ``folder`` puts a SQLite file there instead.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be opened.
        """
        # The records' own engine settings: errors never quote bound values; SQLite in WAL mode.
        self._engine = make_engine(database_url(url, Path(folder) if folder is not None else data_dir()))
        # Made by the owner's migration (revision r0004); only a database never migrated (a first
        # local start, a folder of its own) gets them here. Tables that exist are not touched.
        _Base.metadata.create_all(self._engine, checkfirst=True)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        """Close the connections."""
        self._engine.dispose()

    def study_uid(self, exam_key: str) -> str:
        """The exam's Study Instance UID: generated on first use, the same ever after.

        Raises:
            ValueError: an empty or over-long exam key.
        """
        if not isinstance(exam_key, str) or not 0 < len(exam_key) <= 128:
            raise ValueError("The exam key must be 1 to 128 characters.")
        with self._sessions() as session:
            row = session.get(_StudyRow, exam_key)
            if row is not None:
                return row.study_uid
        try:
            with self._sessions.begin() as session:
                session.add(_StudyRow(exam_key=exam_key, study_uid=new_study_uid(), created_at=_now()))
        except IntegrityError:
            pass  # another writer kept one first: that one stands
        with self._sessions() as session:
            found = session.get(_StudyRow, exam_key)
            assert found is not None
            return found.study_uid

    def keep_source(self, pixels_sha256: str, header: Dataset) -> None:
        """Keep the DICOM header a stored photograph came from (its pixels are in the records already)."""
        header = Dataset(header)
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in header:
                del header[keyword]
        with self._sessions.begin() as session:
            session.merge(_SourceRow(pixels_sha256=pixels_sha256, header_json=header.to_json()))

    def source(self, pixels_sha256: str) -> Dataset | None:
        """The DICOM header kept for these pixels, if they came from DICOM."""
        with self._sessions() as session:
            row = session.get(_SourceRow, pixels_sha256)
        return None if row is None else Dataset.from_json(row.header_json)

    def record(self, exam_key: str, review_version: int, target: str, *, sop_uids: tuple[str, ...] = (),
               error: str | None = None) -> SendAttempt:
        """Keep one attempt: sent when ``error`` is None, else failed with its reason."""
        row = _SendRow(exam_key=exam_key, review_version=review_version, target=target[:128],
                       status=SENT if error is None else "failed", sop_uids=" ".join(sop_uids), error=error,
                       time=_now())
        with self._sessions.begin() as session:
            session.add(row)
        return _attempt(row)

    def history(self, exam_key: str) -> list[SendAttempt]:
        """Every attempt for the exam, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(_SendRow).where(_SendRow.exam_key == exam_key).order_by(_SendRow.id))
            return [_attempt(r) for r in rows]

    def status(self, exam_key: str, review_version: int) -> str:
        """"sent" once a send of this review version succeeded, else "not sent"."""
        done = [a for a in self.history(exam_key) if a.review_version == review_version and a.status == SENT]
        return SENT if done else NOT_SENT


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _attempt(row: _SendRow) -> SendAttempt:
    return SendAttempt(row.exam_key, row.review_version, row.target, row.status,
                       tuple(row.sop_uids.split()) if row.sop_uids else (), row.error, row.time.replace(tzinfo=UTC))


def send_exam(exam: SignedExam, ledger: SendLedger, *, actor: Identity, client: PacsClient | None = None,
              dimse: DimseTarget | str | None = None, store: RecordStore | None = None) -> SendAttempt:
    """Build the exam's DICOM objects and send them; keep the attempt, and audit it when ``store`` is given.

    A PACS failure does not raise: the attempt is kept as failed with the PACS's one-sentence
    message, and the exam stays "not sent" until a later call succeeds.

    Raises:
        TypeError: exam or ledger of the wrong type.
        ValueError: neither or both of client and dimse.
    """
    if not isinstance(exam, SignedExam) or not isinstance(ledger, SendLedger):
        raise TypeError("send_exam needs a SignedExam and a SendLedger.")
    if (client is None) == (dimse is None):
        raise ValueError("Send either by DICOMweb or by DIMSE: give exactly one of the two.")
    objects = build_objects(exam)
    kinds = [("SC", c.SOPInstanceUID) for c in objects.captures] + [("PDF", objects.pdf.SOPInstanceUID),
                                                                     ("SR", objects.sr.SOPInstanceUID)]
    node = parse_target(dimse) if isinstance(dimse, str) else dimse
    if client is not None:
        target = f"DICOMweb {client.config.where}"
    else:
        assert node is not None
        target = f"DIMSE {node.aet}@{node.host}:{node.port}"
    details: dict[str, Any] = {"to": target, "review_version": exam.review_version,
                               "objects": [f"{k} {uid}" for k, uid in kinds]}
    try:
        if client is not None:
            result = client.send(objects.all())
            details["already_present"] = len(result.already_present)
        elif node is not None:
            c_store(objects.all(), node)
    except PacsError as exc:
        attempt = ledger.record(exam.exam_key, exam.review_version, target, error=str(exc))
        details.update(status="failed", error=str(exc))
    else:
        attempt = ledger.record(exam.exam_key, exam.review_version, target,
                                sop_uids=tuple(uid for _, uid in kinds))
        details["status"] = SENT
    if store is not None:
        store.log("exported", actor=actor, patient_pseudo_id=exam.patient.pseudo_id, object_type="pacs_send",
                  object_id=exam.exam_key[:64], details=details)
    return attempt
