"""Reviews: the clinician's finding for an exam, edited until signed, then amended by a new version."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from components.notes import NOTES_MAX_CHARS, tidy_notes
from components.records.errors import NotFound, ReviewLocked, ValidationError
from components.records.schema import ExamRow, ReviewRow, exam_row, utc_now
from components.records.validation import choice, required_text, row_id
from components.vocabulary import FINDINGS, GRADES

__all__ = ["history", "review_content", "save", "sign"]


def review_content(
    *, reviewer: object, agrees: object, finding: object, grade: object, notes: object
) -> dict[str, Any]:
    """The checked content of a review; the finding and grade must agree with each other."""
    reviewer = required_text(reviewer, "the reviewer", 128)
    if not isinstance(agrees, bool | np.bool_):
        raise ValidationError("agrees must be True or False")
    finding = choice(finding, FINDINGS, "the finding")
    grade = choice(grade, GRADES, "the grade")
    if (finding == "normal") != (grade == "none"):
        raise ValidationError("a normal finding takes grade 'none' and a cataract finding takes a grade above it")
    if not isinstance(notes, str):
        raise ValidationError(f"the notes must be text of at most {NOTES_MAX_CHARS} characters")
    notes = tidy_notes(notes)  # blank runs collapsed before the cap, so ten thousand newlines fit as one
    if len(notes) > NOTES_MAX_CHARS:
        raise ValidationError(f"the notes must be text of at most {NOTES_MAX_CHARS} characters")
    return {"reviewer": reviewer, "agrees": bool(agrees), "finding": finding, "grade": grade, "notes": notes}


def _latest(session: Session, exam: ExamRow) -> ReviewRow | None:
    return session.scalars(
        select(ReviewRow).where(ReviewRow.exam_id == exam.id).order_by(ReviewRow.version.desc()).limit(1)
    ).first()


def _check_editable(session: Session, exam: ExamRow, review_id: object) -> None:
    # Only the latest version can be unsigned, so an unsigned one is the latest.
    edited = session.get(ReviewRow, row_id(review_id, "a review ID"))
    if edited is None or edited.exam_id != exam.id:
        raise NotFound("this exam has no review with this ID")
    if edited.status == "signed":
        raise ReviewLocked("this review is signed and cannot be changed; save a new version to amend")


def save(session: Session, exam: ExamRow, content: dict[str, Any], review_id: object | None) -> ReviewRow:
    """Update the unsigned latest review in place, or add a version that supersedes a signed one.

    ``exam`` must be locked (``exam_row(..., lock=True)``) so that two saves take turns. With
    ``review_id``, that review must be the unsigned latest one, or the save is refused.
    """
    latest = _latest(session, exam)
    if review_id is not None:
        _check_editable(session, exam, review_id)
    if latest is not None and latest.status != "signed":
        for key, value in content.items():
            setattr(latest, key, value)
        return latest
    row = ReviewRow(
        exam_id=exam.id,
        version=1 if latest is None else latest.version + 1,
        supersedes=None if latest is None else latest.id,
        status="reviewed",
        signed_at=None,
        created_at=utc_now(),
        **content,
    )
    session.add(row)
    session.flush()
    return row


def sign(session: Session, review_id: int, reviewer: str) -> tuple[ReviewRow, ExamRow]:
    """Sign a review now as ``reviewer``; return it and its exam. A signed review is refused."""
    exam_id = session.scalar(select(ReviewRow.exam_id).where(ReviewRow.id == review_id))
    if exam_id is None:
        raise NotFound("no review has this ID")
    # Lock the exam as a save does, so a save and a signature of one review take turns.
    exam = exam_row(session, exam_id, lock=True)
    row = session.get_one(ReviewRow, review_id)
    if row.status == "signed":
        raise ReviewLocked("this review is already signed; save a new version to amend it")
    row.status = "signed"
    row.reviewer = reviewer
    row.signed_at = utc_now()
    return row, exam


def history(session: Session, exam: ExamRow) -> list[ReviewRow]:
    """Every version of an exam's review, oldest first."""
    return list(session.scalars(select(ReviewRow).where(ReviewRow.exam_id == exam.id).order_by(ReviewRow.version)))
