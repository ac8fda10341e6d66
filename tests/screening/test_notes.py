"""Long notes: the documented cap, blank runs collapsed, a bounded PDF, reports built side by side without a lock."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, datetime

import numpy as np
import pypdf
import pytest

from components.explanation.cam import explain
from components.report import EyeFindings, ModelInfo, PatientInfo, ReportError, ReviewInfo, build_report
from components.screening.notes import NOTES_MAX_CHARS, NOTES_MAX_PARAGRAPHS, note_paragraphs, tidy_notes
from tests.support import make_images, who

GENERATED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
MODEL = ModelInfo(name="clinic-b0", version="1", weights_sha256="0" * 64, threshold=0.5, is_demo=False, card={})


@pytest.fixture(scope="module")
def eye(classifier) -> tuple[np.ndarray, object]:
    image = make_images()[0]
    return image, explain(classifier, [image])[0]


def _pdf(eye, notes: str, report_id: int = 1) -> bytes:
    image, ex = eye
    review = ReviewInfo("Dr. B", True, "Normal lens", None, notes=notes, signed_at=GENERATED)
    eyes = [EyeFindings("OD", image, ex, review=review), EyeFindings("OS", image, ex, review=review)]
    return build_report(PatientInfo("P-1"), eyes, MODEL, report_id=uuid.UUID(int=report_id), generated_at=GENERATED)


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


@pytest.mark.parametrize(
    ("notes", "tidied"),
    [("a\n\n\n\nb", "a\n\nb"), ("a \t\r\n\r\n\r\nb  ", "a\n\nb"), ("\n" * 10_000, ""), ("  x\n", "x"),
     ("one\ntwo", "one\ntwo"), ("a\r\rb", "a\n\nb")])
def test_tidy_notes_by_hand(notes, tidied):
    assert tidy_notes(notes) == tidied


def test_paragraphs_are_bounded_and_nothing_is_dropped():
    lines = [f"line{i}" for i in range(100)]
    out = note_paragraphs("\n".join(lines))
    assert len(out) == NOTES_MAX_PARAGRAPHS
    assert out[:-1] == lines[: NOTES_MAX_PARAGRAPHS - 1]
    assert out[-1] == " / ".join(lines[NOTES_MAX_PARAGRAPHS - 1:])
    with pytest.raises(ValueError, match=f"longer than {NOTES_MAX_CHARS} characters"):
        note_paragraphs("x" * (NOTES_MAX_CHARS + 1))
    with pytest.raises(TypeError):
        tidy_notes(None)  # type: ignore[arg-type]


def test_ten_thousand_newlines_make_a_short_report(eye):
    pdf = _pdf(eye, "Start" + "\n" * 10_000 + "End")
    pages = _pages(pdf)
    assert len(pages) <= 10
    text = " ".join(pages)
    assert text.count("Start") == 2
    assert text.count("End") >= 2
    assert pdf == _pdf(eye, "Start\n\nEnd")  # the same report as the notes tidied by hand


def test_the_longest_notes_of_short_lines_stay_within_ten_pages(eye):
    notes = "\n".join(f"n{i:04d}" for i in range(NOTES_MAX_CHARS // 6))  # 1666 lines, 9995 characters
    assert len(notes) <= NOTES_MAX_CHARS
    pages = _pages(_pdf(eye, notes))
    assert len(pages) <= 10
    found = [w for w in " ".join(pages).split() if w.startswith("n") and w[1:5].isdigit()]
    assert found.count("n1665") == 2  # the last line is there, once per eye


def test_notes_over_the_cap_are_one_report_error(eye):
    with pytest.raises(ReportError, match=f"review's notes must be text of at most {NOTES_MAX_CHARS}"):
        _pdf(eye, "x" * (NOTES_MAX_CHARS + 1))


def test_reports_built_side_by_side_match_those_built_one_at_a_time(eye):
    notes = ["Start" + "\n" * 10_000 + "End", "short", "\n".join(f"n{i}" for i in range(900))]
    alone = [_pdf(eye, n, i) for i, n in enumerate(notes)]
    together: dict[int, bytes] = {}
    start = threading.Barrier(len(notes))

    def build(i: int) -> None:
        start.wait()
        together[i] = _pdf(eye, notes[i], i)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(len(notes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [together.get(i) for i in range(len(notes))] == alone


def test_records_collapse_blank_runs_and_keep_the_cap(tmp_path, monkeypatch):
    from components.records import RecordStore, ValidationError

    monkeypatch.delenv("CATARACT_CAM_DB_URL", raising=False)
    store = RecordStore(data_dir=tmp_path / "data")
    try:
        store.create_patient("N-1")
        exam = store.add_exam("N-1", eye="OD", pixels=make_images()[0])
        kept = store.save_review(exam.id, author=who("dr"), agrees=True, finding="normal", grade="none",
                                 notes="Start" + "\n" * 10_000 + "End")
        assert kept.notes == "Start\n\nEnd"
        with pytest.raises(ValidationError, match=f"at most {NOTES_MAX_CHARS} characters"):
            store.save_review(exam.id, author=who("dr"), agrees=True, finding="normal", grade="none",
                              notes="x" * (NOTES_MAX_CHARS + 1))
    finally:
        store.close()
