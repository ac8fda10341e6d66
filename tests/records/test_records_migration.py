"""The upgrade path: a version-1 database, written as the old program wrote it, migrates to version 2, then 3."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from components.records import SCHEMA_VERSION, RecordStore

SCHEMAS = Path(__file__).resolve().parent / "schema_v1"

V1_ROWS = (
    "INSERT INTO patients (id, pseudo_id, name, created_at) VALUES (1, 'OLD-1', 'Jo Example', '2025-01-02 03:04:05')",
    "INSERT INTO exams (id, patient_id, eye, exam_date, modality, image_sha256, created_at) VALUES "
    f"(1, 1, 'OD', '2025-01-02', 'external', '{'ab' * 32}', '2025-01-02 03:04:06')",
    "INSERT INTO reviews (id, exam_id, version, supersedes, reviewer, agrees, finding, grade, notes, status,"
    " signed_at, created_at) VALUES (1, 1, 1, NULL, 'Dr Old', TRUE, 'cataract', 'mild', 'v1 notes', 'signed',"
    " '2025-01-02 04:00:00', '2025-01-02 03:30:00')",
    "INSERT INTO reviews (id, exam_id, version, supersedes, reviewer, agrees, finding, grade, notes, status,"
    " signed_at, created_at) VALUES (2, 1, 2, 1, 'Dr Draft', FALSE, 'normal', 'none', '', 'reviewed',"
    " NULL, '2025-01-03 03:30:00')",
    "INSERT INTO audit_events (id, time, actor, action, patient_id, object_type, object_id, details) VALUES"
    " (1, '2025-01-02 03:04:05.250000', 'clerk', 'created', 1, 'patient', '1', '{}'),"
    " (2, '2025-01-02 03:04:06', 'tech', 'created', 1, 'exam', '1', '{\"eye\":\"OD\"}'),"
    " (3, '2025-01-02 04:00:00', 'Dr Old', 'signed', 1, 'review', '1', '{\"exam_id\":1,\"version\":1}')",
)


def _write_v1(db_url: str) -> None:
    dialect = db_url.split(":")[0].split("+")[0]
    lines = (SCHEMAS / f"schema_v1.{dialect}.sql").read_text().splitlines()
    schema = "\n".join(line for line in lines if not line.startswith("--"))
    statements = [s.strip() for s in schema.split(";") if s.strip()]
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            for statement in [*statements, *V1_ROWS]:
                connection.exec_driver_sql(statement)
            if dialect == "postgresql":
                for table in ("patients", "exams", "reviews", "audit_events"):
                    connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
    finally:
        engine.dispose()


def test_version_1_migrates_to_3(db_url: str, folder: Path, make_pixels: Callable[..., np.ndarray]) -> None:
    folder.mkdir()
    _write_v1(db_url)
    store = RecordStore(db_url, data_dir=folder)
    try:
        engine = create_engine(db_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version FROM schema_version")).all() == [(SCHEMA_VERSION,)]
        engine.dispose()
        signed, draft = store.review_history(1)
        # Version 1 overwrote the author with the signer: its one name becomes both, unauthenticated.
        assert (signed.author, signed.signer, signed.signer_issuer, signed.notes) == (
            "Dr Old", "Dr Old", "unauthenticated", "v1 notes")
        assert (draft.author, draft.author_issuer, draft.signer, draft.status) == (
            "Dr Draft", "unauthenticated", None, "reviewed")
        trail = store.audit_trail()
        # Version 3 seals every fact there is: the patient, its exam and both review versions.
        assert [(e.seq, e.actor, e.action, e.object_type, e.object_id) for e in trail] == [
            (1, "clerk", "created", "patient", "1"),
            (2, "tech", "created", "exam", "1"),
            (3, "Dr Old", "signed", "review", "1"),
            (4, "schema migration 1 to 2", "signed", "review", "1"),
            (5, "schema migration 2 to 3", "sealed", "patient", "1"),
            (6, "schema migration 2 to 3", "sealed", "exam", "1"),
            (7, "schema migration 2 to 3", "sealed", "review", "1"),
            (8, "schema migration 2 to 3", "sealed", "review", "2"),
        ]
        assert trail[0].time.microsecond == 250000
        assert trail[3].details == {"exam_id": 1, "version": 1, "content_hash": signed.content_hash, "migrated": True}
        assert set(trail[4].details["facts"]) == {"pseudo_id", "name", "birth_date", "sex"}
        assert "Jo Example" not in str(trail[4].details)
        report = store.verify()
        assert (report.ok, report.entries, report.signed_reviews) == (True, 8, 1)
        # The migrated store takes new records, chained after the old ones, with IDs never used before.
        store.create_patient("NEW-1")
        exam = store.add_exam("NEW-1", eye="OS", pixels=make_pixels(60))
        assert exam.id == 2
        assert [e.seq for e in store.audit_trail()][-2:] == [9, 10]
        assert store.verify().ok
        # A fact changed around the store after the migration is named.
        engine = create_engine(db_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE exams SET eye = 'OS' WHERE id = 1"))
        engine.dispose()
        assert store.verify().problem == "exam 1: its eye was changed after it was recorded"
    finally:
        store.close()
    RecordStore(db_url, data_dir=folder).close()  # a second opening finds version 3 and changes nothing
