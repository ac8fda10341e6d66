"""The worklist: one line per patient with each eye's latest result and where its review stands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from components.records.model import WorklistRow
from components.records.schema import AnalysisRow, ExamRow, PatientRow, ReviewRow

__all__ = ["review_summary", "worklist_rows"]


def _latest_results(session: Session, exam_ids: Any) -> dict[int, tuple[str, float]]:
    """(prediction, confidence) of the latest analysis of each exam that has one."""
    latest_analysis = select(func.max(AnalysisRow.id)).group_by(AnalysisRow.exam_id).scalar_subquery()
    rows = session.execute(
        select(AnalysisRow.exam_id, AnalysisRow.prediction, AnalysisRow.confidence).where(
            AnalysisRow.id.in_(latest_analysis), AnalysisRow.exam_id.in_(exam_ids)
        )
    )
    return {row.exam_id: (row.prediction, row.confidence) for row in rows}


def _latest_review_statuses(session: Session, exam_ids: Any) -> dict[int, str]:
    """The status of the latest review version of each exam that has one."""
    latest_version = (
        select(ReviewRow.exam_id, func.max(ReviewRow.version).label("version")).group_by(ReviewRow.exam_id).subquery()
    )
    rows = session.execute(
        select(ReviewRow.exam_id, ReviewRow.status)
        .join(
            latest_version,
            (ReviewRow.exam_id == latest_version.c.exam_id) & (ReviewRow.version == latest_version.c.version),
        )
        .where(ReviewRow.exam_id.in_(exam_ids))
    )
    return {row.exam_id: row.status for row in rows}


def review_summary(statuses: Sequence[str | None]) -> str:
    """A patient's review status from the latest review status of each exam (None: not reviewed)."""
    if not statuses or None in statuses:
        return "unreviewed"
    if all(value == "signed" for value in statuses):
        return "signed"
    return "reviewed"


def _row(
    patient: PatientRow,
    own: Sequence[Any],
    results: dict[int, tuple[str, float]],
    summary: str,
) -> WorklistRow:
    # Exams are oldest first, so the last analysed exam of an eye wins.
    eye_result: dict[str, tuple[str, float]] = {}
    for exam in own:
        if exam.id in results:
            eye_result[exam.eye] = results[exam.id]
    od = eye_result.get("OD", (None, None))
    os_ = eye_result.get("OS", (None, None))
    return WorklistRow(
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


def worklist_rows(session: Session, patients_query: Select[PatientRow], status: str | None) -> list[WorklistRow]:
    """One row per patient the query selects, by pseudonymous ID; only those with ``status`` if given.

    Each eye shows the latest analysis of its most recent analysed exam; see ``review_summary``.
    """
    patients = list(session.scalars(patients_query.order_by(PatientRow.pseudo_id)))
    patient_ids = patients_query.with_only_columns(PatientRow.id).scalar_subquery()
    exams = session.execute(
        select(ExamRow.id, ExamRow.patient_id, ExamRow.eye, ExamRow.exam_date)
        .where(ExamRow.patient_id.in_(patient_ids))
        .order_by(ExamRow.exam_date, ExamRow.id)
    ).all()
    exam_ids = select(ExamRow.id).where(ExamRow.patient_id.in_(patient_ids)).scalar_subquery()
    results = _latest_results(session, exam_ids)
    review_status = _latest_review_statuses(session, exam_ids)
    by_patient: dict[int, list[Any]] = {}
    for exam in exams:
        by_patient.setdefault(exam.patient_id, []).append(exam)
    rows = []
    for patient in patients:
        own = by_patient.get(patient.id, [])
        summary = review_summary([review_status.get(exam.id) for exam in own])
        if status is None or summary == status:
            rows.append(_row(patient, own, results, summary))
    return rows
