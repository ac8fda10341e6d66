"""Tests for the patient record store: validation, images, analyses, reviews, audit, durability."""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.records import (
    DB_URL_ENV,
    SCHEMA_VERSION,
    AlreadyExists,
    NotFound,
    RecordsError,
    RecordStore,
    ReviewLocked,
    SchemaVersionError,
    ValidationError,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_SHA = hashlib.sha256(b"demo model weights").hexdigest()


def _pixels(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_chunk_types(data: bytes) -> list[str]:
    """Walk the PNG chunk list by hand, so the check does not trust the encoder under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    assert offset == len(data)
    return types


def _analysis_kwargs(cam: np.ndarray, /, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "model_sha256": MODEL_SHA,
        "model_name": "demo-efficientnet-b0",
        "method": "gradcam",
        "layer": "features.8",
        "target": "Cataract",
        "prediction": "Cataract",
        "confidence": 0.875,
        "probabilities": {"Cataract": 0.875, "Normal": 0.125},
        "cam": cam,
    }
    values.update(overrides)
    return values


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    return tmp_path / "data"


@pytest.fixture
def store(folder: Path):
    records = RecordStore(data_dir=folder)
    yield records
    records.close()


def test_patient_create_read_update_and_search(store: RecordStore) -> None:
    created = store.create_patient(
        "P-001", name="Ada Example", birth_date="1948-02-29", sex="F", actor="dr.a"
    )
    assert created.pseudo_id == "P-001"
    assert created.birth_date == date(1948, 2, 29)
    assert created.created_at.tzinfo is UTC
    assert store.get_patient("P-001") == created

    updated = store.update_patient("P-001", actor="dr.a", name="Ada Other", sex="X")
    assert (updated.name, updated.sex, updated.birth_date) == ("Ada Other", "X", date(1948, 2, 29))
    assert store.get_patient("P-001") == updated
    assert store.update_patient("P-001", actor="dr.a", birth_date=None).birth_date is None

    store.create_patient("Q_2.b", name="Bob Sample")
    store.create_patient("R3")
    assert [p.pseudo_id for p in store.list_patients()] == ["P-001", "Q_2.b", "R3"]
    assert [p.pseudo_id for p in store.list_patients("other")] == ["P-001"]
    assert [p.pseudo_id for p in store.list_patients("q_2")] == ["Q_2.b"]
    # "_" and "%" are literal characters in a search, not SQL wildcards.
    assert [p.pseudo_id for p in store.list_patients("%")] == []
    assert [p.pseudo_id for p in store.list_patients("_")] == ["Q_2.b"]


@pytest.mark.parametrize(
    "bad_id", ["", "has space", "x" * 65, "slash/id", "accént", "tab\t", None, 42]
)
def test_bad_pseudo_ids_are_refused(store: RecordStore, bad_id: object) -> None:
    with pytest.raises(ValidationError, match="pseudonymous ID must be 1 to 64"):
        store.create_patient(bad_id)  # type: ignore[arg-type]
    assert store.list_patients() == []


def test_longest_and_punctuated_ids_are_accepted(store: RecordStore) -> None:
    for pseudo_id in ["x" * 64, "a", "A-b_c.9"]:
        assert store.create_patient(pseudo_id).pseudo_id == pseudo_id


def test_duplicate_id_is_refused_without_quoting_it(store: RecordStore) -> None:
    store.create_patient("DUP-7", name="Carol First")
    with pytest.raises(AlreadyExists) as error:
        store.create_patient("DUP-7", name="Carol Second")
    assert "DUP-7" not in str(error.value)
    assert "Carol" not in str(error.value)
    assert store.get_patient("DUP-7").name == "Carol First"
    assert [event.action for event in store.audit_trail()] == ["created"]


def test_patient_field_validation(store: RecordStore) -> None:
    store.create_patient("P1")
    with pytest.raises(ValidationError, match="sex must be one of: F, M, X"):
        store.create_patient("P2", sex="female")
    with pytest.raises(ValidationError, match="birth date must not be in the future"):
        store.create_patient("P2", birth_date=date(date.today().year + 1, 1, 1))
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        store.create_patient("P2", birth_date="03/04/1950")
    with pytest.raises(ValidationError, match="only name, birth_date, sex can be updated"):
        store.update_patient("P1", actor="dr", pseudo_id="P9")
    with pytest.raises(NotFound):
        store.get_patient("nobody")
    with pytest.raises(NotFound):
        store.update_patient("nobody", actor="dr", name="x")
    assert issubclass(NotFound, RecordsError)
    assert issubclass(RecordsError, ValueError)


def test_exam_image_is_a_metadata_free_png_named_by_its_sha(
    store: RecordStore, folder: Path
) -> None:
    store.create_patient("EYE-1", name="Dora Example")
    pixels = _pixels(1)
    exam = store.add_exam("EYE-1", eye="OD", pixels=pixels, exam_date=date(2024, 3, 5))

    path = folder / "images" / exam.image_sha256[:2] / f"{exam.image_sha256}.png"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == exam.image_sha256
    chunks = _png_chunk_types(data)
    assert chunks[0] == "IHDR"
    assert chunks[-1] == "IEND"
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}  # no tEXt, iTXt, zTXt, eXIf, tIME, pHYs...
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), pixels)
    np.testing.assert_array_equal(store.get_image(exam.image_sha256), pixels)
    for identifying in ("EYE-1", "Dora"):
        assert identifying not in str(path.relative_to(folder))
        assert identifying.encode() not in data
    # Patient data is private to the user who runs the dashboard.
    for private in (folder, folder / "images", path.parent):
        assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0

    # Content addressing: the same pixels are one file, whatever exam refers to them.
    again = store.add_exam("EYE-1", eye="OS", pixels=pixels.copy())
    assert again.image_sha256 == exam.image_sha256 == store.put_image(pixels)
    assert [p.name for p in (folder / "images").rglob("*") if p.is_file()] == [path.name]


def test_exams_list_right_eye_first_then_by_date(store: RecordStore) -> None:
    store.create_patient("ORD")
    late_os = store.add_exam("ORD", eye="OS", pixels=_pixels(2), exam_date="2024-01-02")
    late_od = store.add_exam("ORD", eye="OD", pixels=_pixels(3), exam_date="2024-03-01")
    early_od = store.add_exam("ORD", eye="OD", pixels=_pixels(4), exam_date="2024-01-05")
    fundus = store.add_exam("ORD", eye="OS", pixels=_pixels(5), modality="fundus")
    assert fundus.exam_date == date.today()
    assert [e.id for e in store.exams("ORD")] == [early_od.id, late_od.id, late_os.id, fundus.id]


def test_exam_validation_writes_nothing(store: RecordStore, folder: Path) -> None:
    store.create_patient("V1")
    with pytest.raises(ValidationError, match="the eye must be one of: OD, OS"):
        store.add_exam("V1", eye="left", pixels=_pixels(6))
    with pytest.raises(ValidationError, match="modality must be one of"):
        store.add_exam("V1", eye="OD", pixels=_pixels(6), modality="xray")
    with pytest.raises(ValidationError, match="uint8"):
        store.add_exam("V1", eye="OD", pixels=_pixels(6).astype(np.float32))
    with pytest.raises(ValidationError, match="uint8"):
        store.add_exam("V1", eye="OD", pixels=_pixels(6)[:, :, 0])
    with pytest.raises(NotFound):
        store.add_exam("nobody", eye="OD", pixels=_pixels(6))
    assert store.exams("V1") == []
    assert not any(p.is_file() for p in (folder / "images").rglob("*"))


def test_analysis_round_trips_the_cam_exactly(store: RecordStore) -> None:
    store.create_patient("AN")
    exam = store.add_exam("AN", eye="OD", pixels=_pixels(7))
    assert store.latest_analysis(exam.id) is None

    rng = np.random.default_rng(8)
    cam = rng.random((224, 224), dtype=np.float32)
    cam[0, :3] = [0.0, 1.0, np.float32(1 / 65535)]
    first = store.add_analysis(exam.id, **_analysis_kwargs(cam))
    second_cam = np.linspace(0, 1, 7 * 9, dtype=np.float64).reshape(7, 9)
    second = store.add_analysis(
        exam.id,
        **_analysis_kwargs(
            second_cam,
            method="gradcam++",
            prediction="Normal",
            confidence=np.float32(0.75),
            probabilities={"Cataract": 0.25, "Normal": 0.75},
            attention={"lens_fraction": 0.8125, "flags": ["eyelid"]},
        ),
    )
    latest = store.latest_analysis(exam.id)
    assert latest is not None
    assert latest.id == second.id > first.id
    assert latest.cam.dtype == np.float32
    assert latest.cam.shape == (7, 9)
    assert np.max(np.abs(latest.cam - second_cam.astype(np.float32))) == 0.0
    assert (latest.prediction, latest.confidence, latest.method) == ("Normal", 0.75, "gradcam++")
    assert latest.probabilities == {"Cataract": 0.25, "Normal": 0.75}
    assert latest.attention == {"lens_fraction": 0.8125, "flags": ["eyelid"]}
    assert latest.model_sha256 == MODEL_SHA
    # The first analysis is kept whole; its map comes back bit for bit.
    assert first.cam.dtype == np.float32
    np.testing.assert_array_equal(first.cam, cam)
    with pytest.raises(ValueError):
        latest.cam[0, 0] = 0.5  # records are read-only

    for bad, message in [
        ({"cam": np.full((4, 4), np.nan)}, "finite"),
        ({"cam": np.zeros(5)}, "2-D array"),
        ({"confidence": 1.5}, "between 0 and 1"),
        ({"model_sha256": "abc"}, "64 hexadecimal"),
        ({"probabilities": {}}, "non-empty mapping"),
    ]:
        with pytest.raises(ValidationError, match=message):
            store.add_analysis(exam.id, **_analysis_kwargs(cam, **bad))
    with pytest.raises(NotFound):
        store.add_analysis(10_000, **_analysis_kwargs(cam))
    assert store.latest_analysis(exam.id) == second


def test_review_versions_lock_and_supersede(store: RecordStore) -> None:
    store.create_patient("RV")
    exam = store.add_exam("RV", eye="OS", pixels=_pixels(9))
    assert store.latest_review(exam.id) is None

    draft = store.save_review(
        exam.id, reviewer="dr.a", agrees=True, finding="cataract", grade="mild"
    )
    assert (draft.version, draft.status, draft.supersedes, draft.signed_at) == (
        1,
        "reviewed",
        None,
        None,
    )
    edited = store.save_review(
        exam.id,
        reviewer="dr.a",
        agrees=False,
        finding="cataract",
        grade="moderate",
        notes="  posterior subcapsular  ",
        review_id=draft.id,
    )
    assert (edited.id, edited.version, edited.grade, edited.notes) == (
        draft.id,
        1,
        "moderate",
        "posterior subcapsular",
    )

    before = datetime.now(UTC)
    signed = store.sign_review(draft.id, reviewer="dr.b")
    after = datetime.now(UTC)
    assert signed.status == "signed"
    assert signed.reviewer == "dr.b"
    assert signed.signed_at is not None
    assert signed.signed_at.tzinfo is UTC
    assert before <= signed.signed_at <= after

    def edit(review_id: int) -> None:
        store.save_review(
            exam.id,
            reviewer="dr.c",
            agrees=True,
            finding="normal",
            grade="none",
            review_id=review_id,
        )

    with pytest.raises(ReviewLocked):
        edit(signed.id)
    with pytest.raises(ReviewLocked):
        store.sign_review(signed.id, reviewer="dr.c")
    assert store.review_history(exam.id) == [signed]

    amended = store.save_review(
        exam.id, reviewer="dr.c", agrees=True, finding="normal", grade="none"
    )
    assert (amended.version, amended.supersedes, amended.status) == (2, signed.id, "reviewed")
    history = store.review_history(exam.id)
    assert history == [signed, amended]
    assert history[0].signed_at == signed.signed_at
    assert history[0].grade == "moderate"
    assert store.latest_review(exam.id) == amended
    # An edit aimed at the superseded version is refused, as is an inconsistent grade.
    with pytest.raises(ReviewLocked):
        edit(signed.id)
    with pytest.raises(ValidationError, match="normal finding takes grade 'none'"):
        store.save_review(exam.id, reviewer="dr.c", agrees=True, finding="normal", grade="severe")
    with pytest.raises(NotFound):
        store.sign_review(10_000, reviewer="dr.c")


def test_worklist_summarises_each_patient(store: RecordStore) -> None:
    store.create_patient("W1", name="Eve Example")
    store.create_patient("W2")
    store.create_patient("W3")
    od_old = store.add_exam("W1", eye="OD", pixels=_pixels(10), exam_date="2023-01-01")
    od_new = store.add_exam("W1", eye="OD", pixels=_pixels(11), exam_date="2024-01-01")
    os_exam = store.add_exam("W1", eye="OS", pixels=_pixels(12), exam_date="2023-06-01")
    cam = np.zeros((4, 4), np.float32)
    store.add_analysis(od_new.id, **_analysis_kwargs(cam, prediction="Normal", confidence=0.625))
    # Analysed later but on an older exam: the newer exam's result is the eye's result.
    store.add_analysis(od_old.id, **_analysis_kwargs(cam, confidence=0.5))
    store.add_analysis(os_exam.id, **_analysis_kwargs(cam, confidence=0.25))
    store.add_analysis(os_exam.id, **_analysis_kwargs(cam, confidence=0.9375))
    w2_exam = store.add_exam("W2", eye="OS", pixels=_pixels(13))

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
        store.save_review(exam.id, reviewer="dr", agrees=True, finding="cataract", grade="mild")
        for exam in (od_old, od_new, os_exam)
    ]
    store.save_review(w2_exam.id, reviewer="dr", agrees=True, finding="normal", grade="none")
    assert {r.pseudo_id: r.review_status for r in store.worklist()} == {
        "W1": "reviewed",
        "W2": "reviewed",
        "W3": "unreviewed",
    }
    for review in reviews[:2]:
        store.sign_review(review.id, reviewer="dr")
    assert store.worklist(search="eve")[0].review_status == "reviewed"  # one exam still unsigned
    store.sign_review(reviews[2].id, reviewer="dr")
    assert [r.pseudo_id for r in store.worklist(status="signed")] == ["W1"]
    assert [r.pseudo_id for r in store.worklist(status="unreviewed")] == ["W3"]
    # A new, unsigned version on a signed exam brings the patient back to "reviewed".
    store.save_review(os_exam.id, reviewer="dr", agrees=False, finding="normal", grade="none")
    assert [r.pseudo_id for r in store.worklist(status="reviewed")] == ["W1", "W2"]
    with pytest.raises(ValidationError, match="review status must be one of"):
        store.worklist(status="done")


def test_audit_trail_records_each_action_in_order(store: RecordStore) -> None:
    store.create_patient("AU", name="Frank Example", actor="clerk")
    pixels = _pixels(14)
    exam = store.add_exam("AU", eye="OD", pixels=pixels, actor="tech")
    store.add_analysis(exam.id, **_analysis_kwargs(np.ones((224, 224), np.float32)), actor="dr.a")
    review = store.save_review(
        exam.id, reviewer="dr.a", agrees=True, finding="normal", grade="none"
    )
    store.sign_review(review.id, reviewer="dr.a")
    store.update_patient("AU", actor="clerk", name="Frank Other")
    store.log(
        "exported",
        actor="dr.a",
        patient_pseudo_id="AU",
        object_type="report",
        details={"pages": 2, "eyes": ["OD"]},
    )
    store.create_patient("OTHER")

    trail = store.audit_trail("AU")
    assert [(e.action, e.actor, e.object_type) for e in trail] == [
        ("created", "clerk", "patient"),
        ("created", "tech", "exam"),
        ("explained", "dr.a", "analysis"),
        ("reviewed", "dr.a", "review"),
        ("signed", "dr.a", "review"),
        ("updated", "clerk", "patient"),
        ("exported", "dr.a", "report"),
    ]
    assert all(e.patient_pseudo_id == "AU" for e in trail)
    assert [e.id for e in trail] == sorted(e.id for e in trail)
    assert [e.time for e in trail] == sorted(e.time for e in trail)
    assert trail[1].object_id == str(exam.id)
    assert trail[1].details["image_sha256"] == exam.image_sha256
    assert trail[5].details == {"fields": ["name"]}
    assert trail[6].details == {"pages": 2, "eyes": ["OD"]}
    assert [e.patient_pseudo_id for e in store.audit_trail()][-1] == "OTHER"

    everything = json.dumps([e.details for e in store.audit_trail()])
    assert "Frank" not in everything
    assert len(everything) < 2000  # no image or map was serialised into the trail
    png = store.get_image(exam.image_sha256).tobytes()
    assert png[:64].hex() not in everything

    for details, message in [
        ({"png": "iVBORw0KGgo="}, "names or image data"),
        ({"Name": "Frank"}, "names or image data"),
        ({"thumbnail": pixels}, "only text, numbers"),
        ({"raw": b"\x89PNG"}, "only text, numbers"),
        ({"blob": "A" * 300}, "at most 256 characters"),
        ({"x": float("nan")}, "finite"),
    ]:
        with pytest.raises(ValidationError, match=message):
            store.log("viewed", actor="dr.a", patient_pseudo_id="AU", details=details)
    with pytest.raises(ValidationError, match="audit action must be one of"):
        store.log("printed", actor="dr.a")
    assert len(store.audit_trail("AU")) == len(trail)


def test_records_persist_across_stores(folder: Path) -> None:
    first = RecordStore(data_dir=folder)
    first.create_patient("KEEP", name="Gina Example", birth_date=date(1960, 7, 1), sex="F")
    pixels = _pixels(15)
    exam = first.add_exam("KEEP", eye="OS", pixels=pixels, exam_date="2024-02-02")
    cam = np.random.default_rng(16).random((14, 14), dtype=np.float32)
    analysis = first.add_analysis(exam.id, **_analysis_kwargs(cam))
    review = first.sign_review(
        first.save_review(
            exam.id, reviewer="dr", agrees=True, finding="cataract", grade="severe"
        ).id,
        reviewer="dr",
    )
    trail = first.audit_trail()
    first.close()

    second = RecordStore(data_dir=folder)
    try:
        assert second.get_patient("KEEP").birth_date == date(1960, 7, 1)
        assert second.exams("KEEP") == [exam]
        np.testing.assert_array_equal(second.get_image(exam.image_sha256), pixels)
        reloaded = second.latest_analysis(exam.id)
        assert reloaded == analysis
        assert reloaded is not None
        np.testing.assert_array_equal(reloaded.cam, cam)
        assert second.latest_review(exam.id) == review
        assert second.audit_trail() == trail
    finally:
        second.close()


def test_schema_version_row_and_newer_schema_refused(folder: Path) -> None:
    RecordStore(data_dir=folder).close()
    RecordStore(data_dir=folder).close()  # reopening does not add a second row
    database = folder / "records.sqlite3"
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert SCHEMA_VERSION == 1
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.execute("UPDATE schema_version SET version = 2")
    connection.close()
    with pytest.raises(SchemaVersionError, match="schema version 2, newer than the 1"):
        RecordStore(data_dir=folder)


def test_database_url_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    other = tmp_path / "elsewhere" / "clinic.sqlite3"
    other.parent.mkdir()
    monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{other}")
    store = RecordStore(data_dir=folder)
    try:
        store.create_patient("URL-1")
        exam = store.add_exam("URL-1", eye="OD", pixels=_pixels(17))
    finally:
        store.close()
    assert not (folder / "records.sqlite3").exists()
    with sqlite3.connect(other) as connection:
        assert connection.execute("SELECT pseudo_id FROM patients").fetchall() == [("URL-1",)]
    connection.close()
    assert (folder / "images" / exam.image_sha256[:2] / f"{exam.image_sha256}.png").is_file()

    # An explicit URL wins over the environment; an in-memory one is shared by all threads.
    memory = RecordStore("sqlite://", data_dir=folder)
    try:
        worker = threading.Thread(target=memory.create_patient, args=("MEM-2",))
        worker.start()
        worker.join()
        memory.create_patient("MEM-1")
        assert [p.pseudo_id for p in memory.list_patients()] == ["MEM-1", "MEM-2"]
    finally:
        memory.close()


def test_threads_share_one_store(store: RecordStore) -> None:
    store.create_patient("SHARED")
    exam = store.add_exam("SHARED", eye="OD", pixels=_pixels(18))
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(5):
                store.create_patient(f"T{worker}-{i}")
                store.save_review(
                    exam.id, reviewer=f"dr{worker}", agrees=True, finding="normal", grade="none"
                )
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    assert len(store.list_patients()) == 21
    # Every save updated the one unsigned version in place.
    assert [r.version for r in store.review_history(exam.id)] == [1]
    assert sum(e.action == "reviewed" for e in store.audit_trail("SHARED")) == 20


CRASH_WRITER = """
import numpy as np
from components.records import RecordStore

store = RecordStore()
for i in range(100_000):
    pseudo_id = f"C{i:05d}"
    store.create_patient(pseudo_id, name="Crash Example")
    pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    exam = store.add_exam(pseudo_id, eye="OD" if i % 2 else "OS", pixels=pixels)
    review = store.save_review(exam.id, reviewer="dr", agrees=True, finding="normal", grade="none")
    store.sign_review(review.id, reviewer="dr")
    print(pseudo_id, exam.id, exam.image_sha256, review.id, flush=True)
"""


def test_killed_writer_leaves_a_consistent_database(folder: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != DB_URL_ENV}
    environment.update({"CATARACT_CAM_DATA": str(folder), "PYTHONPATH": str(REPO_ROOT)})
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    output = b""
    deadline = time.monotonic() + 60
    try:
        while output.count(b"\n") < 30:
            assert writer.poll() is None, writer.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the writer reported too few commits in 60 s"
            ready, _, _ = select.select([writer.stdout], [], [], 1.0)
            if ready:
                output += os.read(writer.stdout.fileno(), 65536)
        # Let it run on a little so the kill lands inside a later write, not between two.
        time.sleep(0.02)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    output += writer.stdout.read()
    writer.stdout.close()
    writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL

    reported = [line.split() for line in output.split(b"\n")[:-1]]  # last piece may be partial
    assert len(reported) >= 30
    with sqlite3.connect(folder / "records.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        for pseudo_id, exam_id, sha, review_id in reported:
            row = db.execute(
                "SELECT e.image_sha256, r.status, r.signed_at IS NOT NULL FROM patients p"
                " JOIN exams e ON e.patient_id = p.id JOIN reviews r ON r.exam_id = e.id"
                " WHERE p.pseudo_id = ? AND e.id = ? AND r.id = ?",
                (pseudo_id.decode(), int(exam_id), int(review_id)),
            ).fetchone()
            assert row == (sha.decode(), "signed", 1)

        def count(sql: str) -> int:
            return db.execute(sql).fetchone()[0]

        assert (
            count(
                "SELECT count(*) FROM reviews r LEFT JOIN exams e ON e.id = r.exam_id"
                " WHERE e.id IS NULL"
            )
            == 0
        )
        # Each row and its audit event were committed together, or neither was.
        audited = dict(
            db.execute(
                "SELECT action || ' ' || object_type, count(*) FROM audit_events GROUP BY 1"
            ).fetchall()
        )
        assert audited == {
            "created patient": count("SELECT count(*) FROM patients"),
            "created exam": count("SELECT count(*) FROM exams"),
            "reviewed review": count("SELECT count(*) FROM reviews"),
            "signed review": count("SELECT count(*) FROM reviews WHERE status = 'signed'"),
        }
        shas = [sha for (sha,) in db.execute("SELECT image_sha256 FROM exams")]
    db.close()
    assert len(shas) >= len(reported)
    for sha in shas:
        data = (folder / "images" / sha[:2] / f"{sha}.png").read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
    leftovers = list((folder / "images").rglob("*.tmp"))
    assert len(leftovers) <= 1  # at most the one file being written when the kill came

    reopened = RecordStore(data_dir=folder)
    try:
        assert reopened.create_patient("AFTER").pseudo_id == "AFTER"
        rows = {row.pseudo_id: row for row in reopened.worklist()}
        assert all(rows[p.decode()].review_status == "signed" for p, *_ in reported)
    finally:
        reopened.close()
