"""Reviews: every save a new version, its author kept; signing binds a version to a signer's identity."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from components.records.chain import review_hash
from components.records.errors import NotFound, ReviewLocked, ValidationError
from components.records.identity import Identity
from components.records.schema import ExamRow, ReviewRow, exam_row, next_row_id, utc_now
from components.records.validation import choice, free_text, row_id
from components.screening.notes import NOTES_MAX_CHARS, tidy_notes
from components.screening.vocabulary import FINDINGS, GRADES

__all__ = ["history", "review_content", "save", "sign"]


def review_content(*, agrees: object, finding: object, grade: object, notes: object) -> dict[str, Any]:
    """The checked content of a review; the finding and grade must agree with each other.

    Raises:
        ValidationError: a value is missing, unknown, or the finding and grade disagree.
    """
    if not isinstance(agrees, bool | np.bool_):
        raise ValidationError("agrees must be True or False")
    finding = choice(finding, FINDINGS, "the finding")
    grade = choice(grade, GRADES, "the grade")
    if (finding == "normal") != (grade == "none"):
        raise ValidationError("a normal finding takes grade 'none' and a cataract finding takes a grade above it")
    if not isinstance(notes, str):
        raise ValidationError(f"the notes must be text of at most {NOTES_MAX_CHARS} characters")
    # A tab becomes a space; blank runs are collapsed before the cap, so ten thousand newlines fit as one.
    notes = free_text(tidy_notes(notes.replace("\t", " ")), "the notes", newlines=True)
    if len(notes) > NOTES_MAX_CHARS:
        raise ValidationError(f"the notes must be text of at most {NOTES_MAX_CHARS} characters")
    return {"agrees": bool(agrees), "finding": finding, "grade": grade, "notes": notes}


def _latest(session: Session, exam: ExamRow) -> ReviewRow | None:
    return session.scalars(
        select(ReviewRow).where(ReviewRow.exam_id == exam.id).order_by(ReviewRow.version.desc()).limit(1)
    ).first()


def _check_based_on(session: Session, exam: ExamRow, latest: ReviewRow | None, review_id: object) -> None:
    # A form that showed a draft saves over nothing: if that draft was signed or followed by another
    # version meanwhile, the clinician must see what changed before saving.
    based_on = session.get(ReviewRow, row_id(review_id, "a review ID"))
    if based_on is None or based_on.exam_id != exam.id:
        raise NotFound("this exam has no review with this ID")
    if based_on.status == "signed":
        raise ReviewLocked("this review is signed and cannot be changed; save a new version to amend")
    if latest is not None and latest.id != based_on.id:
        raise ReviewLocked("a newer version of this review was saved meanwhile; reload it before saving")


def save(
    session: Session, exam: ExamRow, content: dict[str, Any], author: Identity, review_id: object | None
) -> ReviewRow:
    """Add a new version of the exam's review, written by ``author``; no earlier version is changed.

    ``exam`` must be locked (``exam_row(..., lock=True)``) so that two saves take turns. With
    ``review_id`` (the draft a form was showing), that draft must still be the latest and unsigned.

    Raises:
        NotFound: ``review_id`` is not a review of this exam.
        ReviewLocked: that review was signed or superseded meanwhile.
    """
    latest = _latest(session, exam)
    if review_id is not None:
        _check_based_on(session, exam, latest, review_id)
    row = ReviewRow(
        id=next_row_id(session, "reviews"),
        exam_id=exam.id,
        version=1 if latest is None else latest.version + 1,
        supersedes=None if latest is None else latest.id,
        author=author.name,
        author_issuer=author.issuer,
        author_subject=author.subject,
        status="reviewed",
        signed_at=None,
        created_at=utc_now(),
        **content,
    )
    session.add(row)
    session.flush()
    return row


def sign(session: Session, review_id: int, signer: Identity) -> tuple[ReviewRow, ExamRow]:
    """Sign the latest version now as ``signer``; its author and content stay as written.

    Raises:
        NotFound: no review has this ID.
        ReviewLocked: the review is signed already, or a newer version exists.
    """
    exam_id = session.scalar(select(ReviewRow.exam_id).where(ReviewRow.id == review_id))
    if exam_id is None:
        raise NotFound("no review has this ID")
    # Lock the exam as a save does, so a save and a signature of one review take turns.
    exam = exam_row(session, exam_id, lock=True)
    row = session.get_one(ReviewRow, review_id)
    if row.status == "signed":
        raise ReviewLocked("this review is already signed; save a new version to amend it")
    latest = _latest(session, exam)
    if latest is not None and latest.id != row.id:
        raise ReviewLocked("a newer version of this review exists; sign that one")
    row.status = "signed"
    row.signer, row.signer_issuer, row.signer_subject = signer.name, signer.issuer, signer.subject
    row.signed_at = utc_now()
    row.content_hash = review_hash(row)
    session.flush()
    return row, exam


def history(session: Session, exam: ExamRow) -> list[ReviewRow]:
    """Every version of an exam's review, oldest first."""
    return list(session.scalars(select(ReviewRow).where(ReviewRow.exam_id == exam.id).order_by(ReviewRow.version)))
