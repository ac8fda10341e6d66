"""The upgrade path: a version-1 database, written as the old program wrote it, is refused by the program
until its owner runs `cataract-cam records migrate`, which takes it to version 2, then 3 (Alembic's
revisions r0003 and r0004)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from components.cli import main
from components.records import SCHEMA_VERSION, RecordStore, SchemaVersionError

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


def test_version_1_migrates_to_3(db_url: str, folder: Path, make_pixels: Callable[..., np.ndarray], capsys) -> None:
    folder.mkdir()
    _write_v1(db_url)
    # The program changes no schema: it refuses the old one with one sentence, and changes nothing.
    with pytest.raises(SchemaVersionError) as refused:
        RecordStore(db_url, data_dir=folder)
    assert str(refused.value) == ("the records database is at schema version 1, older than this program's 3; run "
                                  "`cataract-cam records migrate` as the database's owner, then start again")
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version FROM schema_version")).all() == [(1,)]
    engine.dispose()
    assert main(["records", "migrate", "--db", db_url, "--data", str(folder)]) == 0
    assert capsys.readouterr().err == "Migrated the records schema from version 1 to 3 (revision r0004).\n"
    store = RecordStore(db_url, data_dir=folder)
    try:
        engine = create_engine(db_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version FROM schema_version")).all() == [(SCHEMA_VERSION,)]
            assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [("r0004",)]
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
    assert main(["records", "migrate", "--db", db_url, "--data", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"before": 3, "after": 3, "revision": "r0004"}


def test_the_app_role_needs_no_ddl_and_the_owner_migrates(postgres, tmp_path: Path, make_pixels, capsys) -> None:
    """A clinic's PostgreSQL: the database's owner migrates it; the program's own role cannot CREATE and need not."""
    from components.records import Identity
    from tests.support import run_sql

    database = f"clinic_{postgres.new_database().rsplit('_', 1)[1]}"
    run_sql(postgres.url(), "CREATE ROLE records_owner LOGIN", "CREATE ROLE records_app LOGIN")
    engine = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {database} OWNER records_owner"))
    engine.dispose()
    owner = postgres.url(database).replace("postgres@", "records_owner@")
    app = postgres.url(database).replace("postgres@", "records_app@")
    run_sql(owner,
            # PostgreSQL 15 already keeps CREATE on the public schema from everyone but its owner.
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO records_app",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO records_app")
    _write_v1(owner)
    folder = tmp_path / "data"
    with pytest.raises(SchemaVersionError, match=r"^the records database is at schema version 1, older than this "
                                                 r"program's 3; run `cataract-cam records migrate` as the database's "
                                                 r"owner, then start again$"):
        RecordStore(app, data_dir=folder)
    # The program's role cannot change the schema even if it tried.
    with pytest.raises(Exception, match="permission denied"):
        run_sql(app, "CREATE TABLE intruder (id integer)")
    assert main(["records", "migrate", "--db", owner, "--data", str(folder)]) == 0
    assert "from version 1 to 3" in capsys.readouterr().err
    store = RecordStore(app, data_dir=folder)
    try:
        dr = Identity("https://idp.clinic.test", "dr-ada", "Dr Ada Example", role="clinician")
        store.create_patient("NEW-7", actor=dr)
        exam = store.add_exam("NEW-7", eye="OD", pixels=make_pixels(70), actor=dr)
        review = store.save_review(exam.id, author=dr, agrees=True, finding="normal", grade="none")
        store.sign_review(review.id, signer=dr)
        assert store.verify().ok
    finally:
        store.close()
    # The interop ledger's tables came with the migration (r0004): the program only uses them.
    from components.interop.ledger import SendLedger

    ledger = SendLedger(app)
    try:
        assert ledger.study_uid("exam-1") == ledger.study_uid("exam-1")
    finally:
        ledger.close()
    with pytest.raises(Exception, match="must be owner of table patients"):
        run_sql(app, "ALTER TABLE patients ADD COLUMN intruder integer")
