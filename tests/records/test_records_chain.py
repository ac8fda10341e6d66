"""The tamper-evident trail: verify passes untouched, names the entry edited, deleted or reordered by raw SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.exc import DBAPIError

from components.records import RecordStore
from components.records.chain import audit_hash
from tests.support import PostgresServer, run_sql, who

TRIGGERS_OFF = {
    # The attacker owns the database file or the server: the append-only triggers go first.
    "sqlite": ["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"],
    "postgresql": ["ALTER TABLE audit_events DISABLE TRIGGER USER"],
}


def _tamper(db_url: str, *statements: str) -> None:
    run_sql(db_url, *TRIGGERS_OFF[db_url.split(":")[0].split("+")[0]], *statements)


@pytest.fixture
def filled(store: RecordStore, make_pixels: Callable[..., np.ndarray]) -> tuple[RecordStore, int]:
    """Six audit entries (seq 1..6) and one signed review; returns the store and the review's ID."""
    store.create_patient("CH", name="Ida Example", actor=who("clerk"))
    exam = store.add_exam("CH", eye="OD", pixels=make_pixels(50), actor=who("tech"))
    review = store.save_review(exam.id, author=who("dr"), agrees=True, finding="cataract", grade="mild")
    store.sign_review(review.id, signer=who("dr"))
    store.update_patient("CH", actor=who("clerk"), sex="F")
    store.log("exported", actor=who("dr"), patient_pseudo_id="CH", object_type="report")
    assert [e.seq for e in store.audit_trail()] == [1, 2, 3, 4, 5, 6]
    return store, review.id


def test_an_untouched_store_verifies(filled: tuple[RecordStore, int]) -> None:
    store, _ = filled
    report = store.verify()
    assert (report.ok, report.entries, report.signed_reviews, report.problem) == (True, 6, 1, None)
    assert len({e.hash for e in store.audit_trail()}) == 6


def test_the_application_cannot_update_or_delete_audit_rows(filled: tuple[RecordStore, int], db_url: str) -> None:
    for statement in ("UPDATE audit_events SET actor = 'someone else' WHERE seq = 2",
                      "DELETE FROM audit_events WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="audit entries are append-only"):
            run_sql(db_url, statement)
    assert filled[0].verify().ok


def test_an_edited_entry_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    _tamper(db_url, "UPDATE audit_events SET actor = 'someone else' WHERE seq = 3")
    assert filled[0].verify().problem == "audit entry 3 was changed after it was written"


def test_a_deleted_entry_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    _tamper(db_url, "DELETE FROM audit_events WHERE seq = 4")
    assert filled[0].verify().problem == "audit entry 4 was removed (the chain jumps to entry 5)"


def test_a_deleted_last_entry_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    _tamper(db_url, "DELETE FROM audit_events WHERE seq = 6")
    assert filled[0].verify().problem == "audit entry 6 was removed (the chain ends at 6)"


def test_two_reordered_entries_are_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    _tamper(
        db_url,
        "UPDATE audit_events SET seq = 100 WHERE seq = 2",
        "UPDATE audit_events SET seq = 2 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 100",
    )
    assert filled[0].verify().problem == "audit entry 2 is not where the chain puts it: inserted or reordered"


def test_an_inserted_entry_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    store, _ = filled
    entry2 = store.audit_trail()[1]
    # The forger even hashes the inserted entry correctly after entry 2; the entry after it no longer fits.
    fields = {"seq": 3, "time": entry2.time, "actor": "forger", "actor_issuer": "unauthenticated",
              "actor_subject": "forger", "action": "viewed", "patient_id": None, "object_type": None,
              "object_id": None, "details": {}}
    forged = audit_hash(entry2.hash, fields)
    _tamper(
        db_url,
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000",
        "INSERT INTO audit_events (seq, time, actor, actor_issuer, actor_subject, action, details, prev_hash, hash)"
        f" SELECT 3, time, 'forger', 'unauthenticated', 'forger', 'viewed', '{{}}', '{entry2.hash}', '{forged}'"
        " FROM audit_events WHERE seq = 2",
    )
    assert store.verify().problem == "audit entry 4 is not where the chain puts it: inserted or reordered"


def test_a_signed_review_changed_with_sql_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    store, review_id = filled
    run_sql(db_url, f"UPDATE reviews SET grade = 'severe' WHERE id = {review_id}")
    assert store.verify().problem == f"signed review {review_id} was changed after it was signed"


def test_a_deleted_signed_review_is_named(filled: tuple[RecordStore, int], db_url: str) -> None:
    store, review_id = filled
    run_sql(db_url, f"DELETE FROM reviews WHERE id = {review_id}")
    assert store.verify().problem == f"signed review {review_id} was removed"


def test_a_postgresql_application_role_can_neither_edit_audit_rows_nor_lift_the_guard(
    postgres: PostgresServer, tmp_path: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    owner_url = postgres.new_database()
    RecordStore(owner_url, data_dir=tmp_path).close()  # the owner creates the schema
    database = owner_url.rsplit("/", 1)[1]
    run_sql(
        owner_url,
        f"CREATE ROLE app_{database} LOGIN",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_{database}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app_{database}",
    )
    app_url = owner_url.replace("postgres@", f"app_{database}@")
    store = RecordStore(app_url, data_dir=tmp_path)
    try:
        store.create_patient("APP")
        exam = store.add_exam("APP", eye="OD", pixels=make_pixels(61))
        store.sign_review(store.save_review(exam.id, author=who("dr"), agrees=True, finding="normal", grade="none").id,
                          signer=who("dr"))
        for statement, refusal in [
            ("UPDATE audit_events SET actor = 'x'", "audit entries are append-only"),
            ("DELETE FROM audit_events", "audit entries are append-only"),
            ("ALTER TABLE audit_events DISABLE TRIGGER USER", "must be owner"),
            ("DROP TRIGGER audit_events_append_only ON audit_events", "must be owner"),
        ]:
            with pytest.raises(DBAPIError, match=refusal):
                run_sql(app_url, statement)
        assert store.verify().ok
    finally:
        store.close()
