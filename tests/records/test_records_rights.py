"""The patient's rights: export, erasure that leaves no trace, retention, and backup restored into an empty store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from components.records import Identity, PermissionDenied, RecordStore
from components.records.schema import Base

ISSUER = "https://idp.clinic.example"
ADMIN = Identity(ISSUER, "sub-admin", "Ada Admin", role="admin")
DOCTOR = Identity(ISSUER, "sub-doc", "Dr Doc", role="clinician")
SECRET_ID, SECRET_NAME = "PX-7731-QZ", "Zebulon Quixotic"


def _fill(store: RecordStore, make_pixels: Callable[..., np.ndarray], cam: np.ndarray,
          analysis_kwargs: Callable[..., dict[str, object]]) -> list[str]:
    store.create_patient(SECRET_ID, name=SECRET_NAME, birth_date="1950-02-03", sex="M", actor=DOCTOR)
    store.create_patient("KEEP-1", name="Other Person", actor=DOCTOR)
    digests = []
    for k, eye in enumerate(("OD", "OS")):
        exam = store.add_exam(SECRET_ID, eye=eye, pixels=make_pixels(80 + k), exam_date="2020-05-06", actor=DOCTOR)
        store.add_analysis(exam.id, **analysis_kwargs(cam), actor=DOCTOR)
        draft = store.save_review(exam.id, author=DOCTOR, agrees=True, finding="cataract", grade="mild")
        store.sign_review(store.save_review(exam.id, author=DOCTOR, agrees=True, finding="cataract", grade="moderate",
                                            review_id=draft.id).id, signer=DOCTOR)
        digests.append(exam.image_sha256)
    store.add_exam("KEEP-1", eye="OD", pixels=make_pixels(90), actor=DOCTOR)
    store.open_patient(SECRET_ID, viewer=DOCTOR)
    return digests


def _database_text(db_url: str, folder: Path) -> bytes:
    """Every byte the database keeps: the SQLite files, or every row of every PostgreSQL table as text."""
    if db_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in folder.glob("records.sqlite3*"))
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return "\n".join(
                str(row) for table in Base.metadata.tables for row in connection.execute(text(f"SELECT * FROM {table}"))
            ).encode()
    finally:
        engine.dispose()


def test_export_then_erase_leaves_no_trace(
    store: RecordStore, db_url: str, folder: Path, tmp_path: Path, make_pixels: Callable[..., np.ndarray],
    analysis_kwargs: Callable[..., dict[str, object]], caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    cam = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
    digests = _fill(store, make_pixels, cam, analysis_kwargs)
    exported = store.export_patient(SECRET_ID, tmp_path / "export", actor=DOCTOR)
    assert exported["patient"]["name"] == SECRET_NAME
    assert [e["eye"] for e in exported["exams"]] == ["OD", "OS"]
    assert [(r["version"], r["status"]) for r in exported["reviews"]] == [(1, "reviewed"), (2, "signed")] * 2
    assert exported["audit"][-1]["action"] == "viewed"
    assert json.loads((tmp_path / "export" / "patient.json").read_text()) == exported
    for k, sha in enumerate(digests):
        np.testing.assert_array_equal(store.get_image(sha), make_pixels(80 + k))
        assert (tmp_path / "export" / "images" / f"{sha}.png").is_file()
    first_map = tmp_path / "export" / "maps" / f"analysis-{exported['analyses'][0]['id']}.npy"
    np.testing.assert_array_equal(np.load(first_map), cam)

    with pytest.raises(PermissionDenied, match="only an admin may erase"):
        store.erase_patient(SECRET_ID, actor=DOCTOR)
    assert store.erase_patient(SECRET_ID, actor=ADMIN) == {"exams": 2, "analyses": 2, "reviews": 4, "images": 2}

    everything = _database_text(db_url, folder)
    for secret in (SECRET_ID, SECRET_NAME, *digests, "1950-02-03"):
        assert secret.encode() not in everything, secret
    assert not any((store.images_dir / sha[:2] / f"{sha}.png").exists() for sha in digests)
    assert sorted(p.name for p in store.images_dir.rglob("*.png")) == [f"{store.exams('KEEP-1')[0].image_sha256}.png"]
    logs = caplog.text + "".join(capfd.readouterr())
    if "postgresql" in db_url:
        logs += (request.getfixturevalue("postgres").root / "log").read_text()
    assert SECRET_ID not in logs
    assert SECRET_NAME not in logs
    erased = [e for e in store.audit_trail() if e.action == "erased"]
    assert [(e.actor_subject, e.patient_pseudo_id, e.details) for e in erased] == [
        ("sub-admin", None, {"exams": 2, "analyses": 2, "reviews": 4, "images": 2})
    ]
    report = store.verify()
    assert report.ok, report.problem
    assert report.signed_reviews == 0
    assert [p.pseudo_id for p in store.list_patients()] == ["KEEP-1"]


def test_retention_lists_patients_past_it(store: RecordStore, make_pixels: Callable[..., np.ndarray],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_patient("OLD")
    store.add_exam("OLD", eye="OD", pixels=make_pixels(91), exam_date="2014-03-01")
    store.add_exam("OLD", eye="OS", pixels=make_pixels(92), exam_date="2015-03-01")
    store.create_patient("RECENT")
    store.add_exam("RECENT", eye="OD", pixels=make_pixels(93), exam_date="2024-03-01")
    store.create_patient("NO-EXAM")
    today = date(2026, 3, 2)
    assert store.past_retention(10, today=today) == [("OLD", date(2015, 3, 1))]
    assert store.past_retention(10, today=date(2025, 3, 1)) == []  # exactly ten years: not yet past
    assert store.past_retention(1, today=today) == [("OLD", date(2015, 3, 1)), ("RECENT", date(2024, 3, 1))]
    monkeypatch.setenv("CATARACT_CAM_RETENTION_YEARS", "3")
    assert [p for p, _ in store.past_retention(today=today)] == ["OLD"]
    monkeypatch.setenv("CATARACT_CAM_RETENTION_YEARS", "ten")
    with pytest.raises(ValueError, match="whole number of years"):
        store.past_retention(today=today)
    with pytest.raises(TypeError):
        store.past_retention("10", today=today)  # type: ignore[arg-type]


def test_backup_restores_into_an_empty_store_and_verifies(
    store: RecordStore, db_url: str, tmp_path: Path, make_pixels: Callable[..., np.ndarray],
    analysis_kwargs: Callable[..., dict[str, object]], request: pytest.FixtureRequest,
) -> None:
    cam = np.full((5, 5), 0.5, np.float32)
    _fill(store, make_pixels, cam, analysis_kwargs)
    rows = store.backup(tmp_path / "backup")
    if "postgresql" in db_url:
        target_url = request.getfixturevalue("postgres").new_database()
    else:
        target_url = f"sqlite:///{tmp_path / 'restored.sqlite3'}"
    restored = RecordStore(target_url, data_dir=tmp_path / "restored-data")
    try:
        assert restored.restore(tmp_path / "backup") == rows
        report = restored.verify()
        assert (report.ok, report.entries, report.signed_reviews) == (True, len(store.audit_trail()), 2)
        assert restored.audit_trail() == store.audit_trail()
        assert restored.list_patients() == store.list_patients()
        for exam in store.exams(SECRET_ID):
            assert restored.review_history(exam.id) == store.review_history(exam.id)
            np.testing.assert_array_equal(restored.get_image(exam.image_sha256), store.get_image(exam.image_sha256))
            np.testing.assert_array_equal(restored._analyses(exam.id)[0].cam, cam)
        # The restored store goes on: new rows get new IDs and chain after the restored head.
        restored.create_patient("AFTER")
        assert restored.verify().ok
        with pytest.raises(Exception, match="empty database only"):
            restored.restore(tmp_path / "backup")
    finally:
        restored.close()
