"""The patient's rights: everything held on one patient, its erasure, and who is past the retention period."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from components.base import config
from components.lens.attention import AttentionResult
from components.records.schema import AnalysisRow, ExamRow, PatientRow, ReviewRow

__all__ = ["erase_rows", "jsonable", "last_activity", "retention_years", "years_before"]

# Ten years after the last exam: a common floor for adult medical records; set the clinic's own.
DEFAULT_RETENTION_YEARS: Final = 10


def retention_years() -> int:
    """The retention period in whole years: $CATARACT_CAM_RETENTION_YEARS, else 10.

    Raises:
        ConfigError: the setting is not a whole number of years from 1 to 100 (a ValueError).
    """
    configured = config.integer(config.RETENTION_YEARS, 1, 100, unit="years")
    return DEFAULT_RETENTION_YEARS if configured is None else configured


def jsonable(value: Any) -> Any:
    """A record (or a list or mapping of them) as plain JSON values; maps are left out as arrays are."""
    if isinstance(value, AttentionResult):
        return value.as_dict()  # its own plain form: the region's numbers, not its mask
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value) if f.name != "cam"}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def last_activity(session: Session, cutoff: date) -> list[tuple[str, date]]:
    """Patients whose last exam (or, without exams, their creation) is before ``cutoff``, oldest first."""
    last_exam = (
        select(ExamRow.patient_id, func.max(ExamRow.exam_date).label("last")).group_by(ExamRow.patient_id).subquery()
    )
    rows = session.execute(
        select(PatientRow.pseudo_id, PatientRow.created_at, last_exam.c.last)
        .outerjoin(last_exam, last_exam.c.patient_id == PatientRow.id)
        .order_by(PatientRow.pseudo_id)
    )
    found = [(pseudo_id, last if last is not None else created.date()) for pseudo_id, created, last in rows]
    return sorted(((p, d) for p, d in found if d < cutoff), key=lambda item: (item[1], item[0]))


def years_before(today: date, years: int) -> date:
    """The same calendar day ``years`` earlier (28 February for 29 February in a common year)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


def erase_rows(session: Session, patient: PatientRow) -> tuple[dict[str, int], set[str]]:
    """Delete a patient's analyses, reviews, exams and the patient; return counts and the image digests.

    Audit entries stay: they hold the patient's row ID, which names nobody once the row is gone.
    """
    exam_ids = select(ExamRow.id).where(ExamRow.patient_id == patient.id)
    images = set(session.scalars(select(ExamRow.image_sha256).where(ExamRow.patient_id == patient.id)))
    counts = {
        "exams": len(session.scalars(exam_ids).all()),
        "analyses": session.scalar(select(func.count()).where(AnalysisRow.exam_id.in_(exam_ids))) or 0,
        "reviews": session.scalar(select(func.count()).where(ReviewRow.exam_id.in_(exam_ids))) or 0,
    }
    # Versions point at the version they supersede: unlink them before deleting any.
    session.execute(update(ReviewRow).where(ReviewRow.exam_id.in_(exam_ids)).values(supersedes=None))
    session.execute(delete(ReviewRow).where(ReviewRow.exam_id.in_(exam_ids)))
    session.execute(delete(AnalysisRow).where(AnalysisRow.exam_id.in_(exam_ids)))
    session.execute(delete(ExamRow).where(ExamRow.patient_id == patient.id))
    session.execute(delete(PatientRow).where(PatientRow.id == patient.id))
    still_used = set(session.scalars(select(ExamRow.image_sha256).where(ExamRow.image_sha256.in_(images))))
    return counts, images - still_used
