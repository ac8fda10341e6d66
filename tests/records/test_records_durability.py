"""Durability: records survive reopening, schema versions, the database URL, threads and a killed writer."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from components.base import config
from components.records import SCHEMA_VERSION, RecordStore, SchemaVersionError
from tests.support import ROOT, who


def test_records_persist_across_stores(
    folder: Path, db_url: str, make_pixels: Callable[..., np.ndarray], analysis_kwargs: Callable[..., dict[str, object]]
) -> None:
    first = RecordStore(db_url, data_dir=folder)
    first.create_patient("KEEP", name="Gina Example", birth_date=date(1960, 7, 1), sex="F")
    pixels = make_pixels(15)
    exam = first.add_exam("KEEP", eye="OS", pixels=pixels, exam_date="2024-02-02")
    cam = np.random.default_rng(16).random((14, 14), dtype=np.float32)
    analysis = first.add_analysis(exam.id, **analysis_kwargs(cam))
    review = first.sign_review(
        first.save_review(exam.id, author=who("dr"), agrees=True, finding="cataract", grade="severe").id,
        signer=who("dr"),
    )
    trail = first.audit_trail()
    first.close()

    second = RecordStore(db_url, data_dir=folder)
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
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert SCHEMA_VERSION == 3
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection.execute("UPDATE schema_version SET version = 4")
    connection.close()
    with pytest.raises(SchemaVersionError, match="schema version 4, newer than the 3"):
        RecordStore(data_dir=folder)


def test_database_url_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_pixels: Callable[..., np.ndarray]
) -> None:
    folder = tmp_path / "data"
    other = tmp_path / "elsewhere" / "clinic.sqlite3"
    other.parent.mkdir()
    monkeypatch.setenv(config.DB_URL.name, f"sqlite:///{other}")
    store = RecordStore(data_dir=folder)
    try:
        store.create_patient("URL-1")
        exam = store.add_exam("URL-1", eye="OD", pixels=make_pixels(17))
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


def test_threads_share_one_store(store: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    store.create_patient("SHARED")
    exam = store.add_exam("SHARED", eye="OD", pixels=make_pixels(18))
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(5):
                store.create_patient(f"T{worker}-{i}")
                store.save_review(exam.id, author=who(f"dr{worker}"), agrees=True, finding="normal", grade="none")
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    assert len(store.list_patients()) == 21
    # Every save is a version of its own: none was lost, none overwrote another.
    history = store.review_history(exam.id)
    assert [r.version for r in history] == list(range(1, 21))
    assert sorted(r.author for r in history) == sorted(f"dr{w}" for w in range(4) for _ in range(5))
    assert sum(e.action == "reviewed" for e in store.audit_trail("SHARED")) == 20


CRASH_WRITER = """
import numpy as np
from components.records import Identity, RecordStore

store = RecordStore()
dr = Identity.unauthenticated("dr")
for i in range(100_000):
    pseudo_id = f"C{i:05d}"
    store.create_patient(pseudo_id, name="Crash Example")
    pixels = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    exam = store.add_exam(pseudo_id, eye="OD" if i % 2 else "OS", pixels=pixels)
    review = store.save_review(exam.id, author=dr, agrees=True, finding="normal", grade="none")
    store.sign_review(review.id, signer=dr)
    print(pseudo_id, exam.id, exam.image_sha256, review.id, flush=True)
"""


def test_killed_writer_leaves_a_consistent_database(folder: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != config.DB_URL.name}
    environment.update({"CATARACT_CAM_DATA": str(folder), "PYTHONPATH": str(ROOT)})
    writer = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER],
        cwd=ROOT,
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

        assert count("SELECT count(*) FROM reviews r LEFT JOIN exams e ON e.id = r.exam_id WHERE e.id IS NULL") == 0
        # Each row and its audit event were committed together, or neither was.
        audited = dict(
            db.execute("SELECT action || ' ' || object_type, count(*) FROM audit_events GROUP BY 1").fetchall()
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
