"""Reviews and the worklist: versions, signing and its lock, and each patient's summary line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import numpy as np
import pytest

from components.records import NotFound, RecordStore, ReviewLocked, ValidationError
from tests.support import who


def test_review_versions_lock_and_supersede(store: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    store.create_patient("RV")
    exam = store.add_exam("RV", eye="OS", pixels=make_pixels(9))
    assert store.latest_review(exam.id) is None

    draft = store.save_review(exam.id, author=who("dr.a"), agrees=True, finding="cataract", grade="mild")
    assert (draft.version, draft.status, draft.supersedes, draft.signed_at) == (
        1,
        "reviewed",
        None,
        None,
    )
    edited = store.save_review(
        exam.id,
        author=who("dr.a"),
        agrees=False,
        finding="cataract",
        grade="moderate",
        notes="  posterior subcapsular  ",
        review_id=draft.id,
    )
    # A save is a new version; the first draft is kept as it was written.
    assert (edited.version, edited.supersedes, edited.grade, edited.notes) == (
        2,
        draft.id,
        "moderate",
        "posterior subcapsular",
    )
    assert store.review_history(exam.id)[0] == draft

    before = datetime.now(UTC)
    with pytest.raises(ReviewLocked, match="newer version"):
        store.sign_review(draft.id, signer=who("dr.b"))
    signed = store.sign_review(edited.id, signer=who("dr.b"))
    after = datetime.now(UTC)
    assert signed.status == "signed"
    assert (signed.author, signed.signer, signed.reviewer) == ("dr.a", "dr.b", "dr.b")
    assert signed.signed_at is not None
    assert signed.signed_at.tzinfo is UTC
    assert before <= signed.signed_at <= after

    def edit(review_id: int) -> None:
        store.save_review(
            exam.id,
            author=who("dr.c"),
            agrees=True,
            finding="normal",
            grade="none",
            review_id=review_id,
        )

    with pytest.raises(ReviewLocked):
        edit(signed.id)
    with pytest.raises(ReviewLocked):
        store.sign_review(signed.id, signer=who("dr.c"))
    assert store.review_history(exam.id) == [draft, signed]

    amended = store.save_review(exam.id, author=who("dr.c"), agrees=True, finding="normal", grade="none")
    assert (amended.version, amended.supersedes, amended.status) == (3, signed.id, "reviewed")
    history = store.review_history(exam.id)
    assert history == [draft, signed, amended]
    assert history[1].signed_at == signed.signed_at
    assert history[1].grade == "moderate"
    assert store.latest_review(exam.id) == amended
    # An edit aimed at the superseded version is refused, as is an inconsistent grade.
    with pytest.raises(ReviewLocked):
        edit(signed.id)
    with pytest.raises(ValidationError, match="normal finding takes grade 'none'"):
        store.save_review(exam.id, author=who("dr.c"), agrees=True, finding="normal", grade="severe")
    with pytest.raises(NotFound):
        store.sign_review(10_000, signer=who("dr.c"))


def test_worklist_summarises_each_patient(
    store: RecordStore, make_pixels: Callable[..., np.ndarray], analysis_kwargs: Callable[..., dict[str, object]]
) -> None:
    store.create_patient("W1", name="Eve Example")
    store.create_patient("W2")
    store.create_patient("W3")
    od_old = store.add_exam("W1", eye="OD", pixels=make_pixels(10), exam_date="2023-01-01")
    od_new = store.add_exam("W1", eye="OD", pixels=make_pixels(11), exam_date="2024-01-01")
    os_exam = store.add_exam("W1", eye="OS", pixels=make_pixels(12), exam_date="2023-06-01")
    cam = np.zeros((4, 4), np.float32)
    store.add_analysis(od_new.id, **analysis_kwargs(cam, prediction="Normal", confidence=0.625))
    # Analysed later but on an older exam: the newer exam's result is the eye's result.
    store.add_analysis(od_old.id, **analysis_kwargs(cam, confidence=0.5))
    store.add_analysis(os_exam.id, **analysis_kwargs(cam, confidence=0.25))
    store.add_analysis(os_exam.id, **analysis_kwargs(cam, confidence=0.9375))
    w2_exam = store.add_exam("W2", eye="OS", pixels=make_pixels(13))

    rows = {row.pseudo_id: row for row in store.worklist()}
    w1 = rows["W1"]
    assert (w1.name, w1.n_eyes, w1.n_exams, w1.last_exam_date) == (
        "Eve Example",
        2,
        3,
        date(2024, 1, 1),
    )
    assert (w1.od_prediction, w1.od_confidence) == ("Normal", 0.625)
    assert (w1.os_prediction, w1.os_confidence) == ("Cataract", 0.9375)
    assert [rows[p].review_status for p in ("W1", "W2", "W3")] == ["unreviewed"] * 3
    assert (rows["W3"].n_exams, rows["W3"].od_prediction, rows["W3"].last_exam_date) == (
        0,
        None,
        None,
    )

    reviews = [
        store.save_review(exam.id, author=who("dr"), agrees=True, finding="cataract", grade="mild")
        for exam in (od_old, od_new, os_exam)
    ]
    store.save_review(w2_exam.id, author=who("dr"), agrees=True, finding="normal", grade="none")
    assert {r.pseudo_id: r.review_status for r in store.worklist()} == {
        "W1": "reviewed",
        "W2": "reviewed",
        "W3": "unreviewed",
    }
    for review in reviews[:2]:
        store.sign_review(review.id, signer=who("dr"))
    assert store.worklist(search="eve")[0].review_status == "reviewed"  # one exam still unsigned
    store.sign_review(reviews[2].id, signer=who("dr"))
    assert [r.pseudo_id for r in store.worklist(status="signed")] == ["W1"]
    assert [r.pseudo_id for r in store.worklist(status="unreviewed")] == ["W3"]
    # A new, unsigned version on a signed exam brings the patient back to "reviewed".
    store.save_review(os_exam.id, author=who("dr"), agrees=False, finding="normal", grade="none")
    assert [r.pseudo_id for r in store.worklist(status="reviewed")] == ["W1", "W2"]
    with pytest.raises(ValidationError, match="review status must be one of"):
        store.worklist(status="done")


def test_notes_keep_lines_lose_tabs_and_refuse_other_control_characters(
    store: RecordStore, make_pixels: Callable[..., np.ndarray]
) -> None:
    store.create_patient("NT")
    exam = store.add_exam("NT", eye="OD", pixels=make_pixels(11))
    kept = store.save_review(exam.id, author=who("dr.a"), agrees=True, finding="normal", grade="none",
                             notes="clear lens\r\n\tno opacity")
    assert kept.notes == "clear lens\n no opacity"
    for control in ("\x1b[31m", "\x00", "\x0c", "\x7f", "\x9b", "\u2029"):
        with pytest.raises(ValidationError, match=r"^the notes must not contain control characters \(found U\+"):
            store.save_review(exam.id, author=who("dr.a"), agrees=True, finding="normal", grade="none",
                              notes=f"clear{control}lens")
    assert [r.version for r in store.review_history(exam.id)] == [1]
