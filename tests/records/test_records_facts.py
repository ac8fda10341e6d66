"""Every clinical fact in the chain: raw-SQL changes of demographics, eyes, photographs, owners, analyses and
review versions are named by verify; the chain head cannot be moved; an erased patient's IDs and trail stay its own.

Before schema version 3 each change below passed ``records verify`` (only audit rows and signed review content
were chained), and SQLite gave an erased patient's row ID, with its audit entries, to the next patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy.exc import DBAPIError

from components.records import RecordStore
from tests.support import run_sql, who

DR = who("dr")


@dataclass(frozen=True)
class Clinic:
    store: RecordStore
    ada: int  # patient row IDs
    bob: int
    od: int  # Ada's exams
    os: int
    analysis: int
    signed: int  # the OD review's signed version 1
    amendment: int  # its unsigned version 2


def _row_id(store: RecordStore, pseudo_id: str) -> int:
    (created,) = [e for e in store.audit_trail(pseudo_id) if e.action == "created" and e.object_type == "patient"]
    return int(str(created.object_id))


@pytest.fixture
def clinic(store: RecordStore, make_pixels: Callable[..., np.ndarray]) -> Clinic:
    store.create_patient("FA-1", name="Ada Patient", birth_date="1950-03-04", sex="F")
    store.create_patient("FB-2", name="Bob Patient")
    od = store.add_exam("FA-1", eye="OD", pixels=make_pixels(81))
    os_ = store.add_exam("FA-1", eye="OS", pixels=make_pixels(82))
    analysis = store.add_analysis(
        od.id, model_sha256="c" * 64, model_name="demo", method="gradcam", layer="features.8", target="Cataract",
        prediction="Cataract", confidence=0.91, probabilities={"Cataract": 0.91, "Normal": 0.09},
        cam=np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), actor=DR)
    signed = store.sign_review(store.save_review(od.id, author=DR, agrees=True, finding="cataract",
                                                 grade="mild").id, signer=DR)
    amendment = store.save_review(od.id, author=DR, agrees=False, finding="cataract", grade="moderate",
                                  notes="denser than it looked")
    assert store.verify().ok
    return Clinic(store, _row_id(store, "FA-1"), _row_id(store, "FB-2"), od.id, os_.id, analysis.id, signed.id,
                  amendment.id)


CHANGES: list[tuple[str, Callable[[Clinic], list[str]], Callable[[Clinic], str]]] = [
    ("OD and OS swapped",
     lambda c: [f"UPDATE exams SET eye = CASE eye WHEN 'OD' THEN 'OS' ELSE 'OD' END WHERE id IN ({c.od}, {c.os})"],
     lambda c: f"exam {c.od}: its eye was changed after it was recorded"),
    ("the photograph under a signed review swapped",
     lambda c: [f"UPDATE exams SET image_sha256 = (SELECT image_sha256 FROM exams WHERE id = {c.os}) "
                f"WHERE id = {c.od}"],
     lambda c: f"exam {c.od}: its photograph was changed after it was recorded"),
    ("an exam moved to another patient",
     lambda c: [f"UPDATE exams SET patient_id = {c.bob} WHERE id = {c.os}"],
     lambda c: f"exam {c.os}: its patient was changed after it was recorded"),
    ("a patient's name changed",
     lambda c: [f"UPDATE patients SET name = 'Someone Else' WHERE id = {c.ada}"],
     lambda c: f"patient {c.ada}: its name was changed after it was recorded"),
    ("a birth date changed",
     lambda c: [f"UPDATE patients SET birth_date = '1951-03-04' WHERE id = {c.ada}"],
     lambda c: f"patient {c.ada}: its birth date was changed after it was recorded"),
    ("an unsigned amendment deleted",
     lambda c: [f"DELETE FROM reviews WHERE id = {c.amendment}"],
     lambda c: f"review {c.amendment} was removed"),
    ("an unsigned amendment's finding changed",
     lambda c: [f"UPDATE reviews SET grade = 'mild' WHERE id = {c.amendment}"],
     lambda c: f"review {c.amendment}: its grade was changed after it was recorded"),
    ("the model's prediction changed",
     lambda c: [f"UPDATE analyses SET prediction = 'Normal' WHERE id = {c.analysis}"],
     lambda c: f"analysis {c.analysis}: its prediction was changed after it was recorded"),
    ("a patient's key replaced to re-seal",
     lambda c: [f"UPDATE patients SET seal_key = '{'0' * 64}' WHERE id = {c.bob}"],
     lambda c: f"patient {c.bob}: its pseudonymous ID was changed after it was recorded"),
    ("a patient inserted around the store",
     lambda c: ["INSERT INTO patients (id, pseudo_id, created_at) VALUES (900, 'GHOST', '2026-01-01 00:00:00')"],
     lambda c: "patient 900 is in no audit entry: it was written around the store"),
]


@pytest.mark.parametrize(("change", "statements", "problem"), CHANGES, ids=[c[0] for c in CHANGES])
def test_each_raw_sql_change_of_a_fact_is_named(clinic: Clinic, db_url: str, change, statements, problem) -> None:
    run_sql(db_url, *statements(clinic))
    report = clinic.store.verify()
    assert not report.ok
    assert report.problem == problem(clinic)


def test_the_chain_head_and_the_id_counters_refuse_raw_sql(clinic: Clinic, db_url: str) -> None:
    for statement, refusal in [
        ("UPDATE audit_head SET seq = seq - 1", "the chain head moves only onto the entry appended after it"),
        ("UPDATE audit_head SET hash = '" + "f" * 64 + "'", "the chain head moves only"),
        ("UPDATE audit_head SET seq = seq + 1", "the chain head moves only"),
        ("DELETE FROM audit_head", "the chain head moves only"),
        ("UPDATE row_ids SET last = 0 WHERE name = 'patients'", "row IDs only go up"),
        ("DELETE FROM row_ids", "row IDs only go up"),
    ]:
        with pytest.raises(DBAPIError, match=refusal):
            run_sql(db_url, statement)
    # The store's own appends still move the head.
    clinic.store.update_patient("FB-2", actor=DR, sex="M")
    assert clinic.store.verify().ok


def test_erasure_leaves_counts_and_a_later_patient_starts_with_an_empty_trail(
    clinic: Clinic, db_url: str, make_pixels: Callable[..., np.ndarray]
) -> None:
    store = clinic.store
    store.erase_patient("FB-2", actor=DR)  # the newest patient: SQLite handed its ID out again
    store.erase_patient("FA-1", actor=DR)
    erased = {clinic.ada, clinic.bob}
    everything = store.audit_trail()
    left = [e for e in everything if e.patient_pseudo_id is None and e.object_type in ("patient", "exam", "analysis",
                                                                                           "review")]
    assert {e.action for e in left} == {"created", "explained", "reviewed", "signed", "erased"}
    # What is left of them: actions, counts and seals whose key is gone, no finding, grade or prediction.
    assert not {"finding", "grade", "prediction", "confidence", "notes", "agrees"} & {
        k for e in left for k in e.details}
    assert [e.details for e in left if e.action == "erased"][-1] == {
        "exams": 2, "analyses": 1, "reviews": 2, "images": 2}
    store.create_patient("FC-3", name="Carol Patient")
    carol = _row_id(store, "FC-3")
    assert carol not in erased
    assert carol > max(erased)
    assert [e.action for e in store.audit_trail("FC-3")] == ["created"]
    exam = store.add_exam("FC-3", eye="OD", pixels=make_pixels(83))
    assert exam.id > clinic.os
    review = store.sign_review(store.save_review(exam.id, author=DR, agrees=True, finding="normal",
                                                 grade="none").id, signer=DR)
    assert review.id > clinic.amendment
    assert store.verify().ok
    # Deleting the new patient's signed review is not taken for part of the erasure.
    run_sql(db_url, f"DELETE FROM reviews WHERE id = {review.id}")
    assert store.verify().problem == f"signed review {review.id} was removed"


def test_a_restored_backup_hands_out_no_erased_id(clinic: Clinic, tmp_path, db_url: str) -> None:
    store = clinic.store
    store.erase_patient("FB-2", actor=DR)
    store.backup(tmp_path / "backup")
    restored = RecordStore(f"sqlite:///{tmp_path / 'restored.sqlite3'}", data_dir=tmp_path / "restored")
    try:
        restored.restore(tmp_path / "backup")
        assert restored.verify().ok
        restored.create_patient("FD-4")
        assert _row_id(restored, "FD-4") > clinic.bob
        assert [e.action for e in restored.audit_trail("FD-4")] == ["created"]
        assert restored.verify().ok
    finally:
        restored.close()
