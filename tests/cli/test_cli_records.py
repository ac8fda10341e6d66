"""``cataract-cam records``: verify names the changed entry; export (JSON, photographs, PDF), erase, backup."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from components.base import config
from components.records import Identity, RecordStore

DOC = Identity("https://idp.example", "sub-doc", "Dr Doc", role="clinician")


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder with one patient, one signed review and an old patient past a one-year retention."""
    monkeypatch.delenv(config.DB_URL.name, raising=False)
    folder = tmp_path / "data"
    store = RecordStore(data_dir=folder)
    try:
        store.create_patient("CLI-1", name="Una Example")
        exam = store.add_exam("CLI-1", eye="OD", pixels=np.full((40, 60, 3), 120, np.uint8), exam_date="2020-01-02")
        draft = store.save_review(exam.id, author=DOC, agrees=True, finding="normal", grade="none")
        store.sign_review(draft.id, signer=DOC)
    finally:
        store.close()
    return folder


def test_verify_passes_then_names_the_changed_entry(run_cli, data: Path) -> None:
    code, out, _ = run_cli(["records", "verify", "--data", data, "--json"])
    assert (code, json.loads(out)) == (0, {"ok": True, "entries": 4, "signed_reviews": 1, "problem": None})
    with sqlite3.connect(data / "records.sqlite3") as db:
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("UPDATE audit_events SET actor = 'nobody' WHERE seq = 2")
    db.close()
    code, out, _ = run_cli(["records", "verify", "--data", data, "--json"])
    assert code == 3
    assert json.loads(out)["problem"] == "audit entry 2 was changed after it was written"


def test_export_erase_backup_restore(run_cli, data: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(["records", "export", "--patient", "CLI-1", "--out", tmp_path / "exp", "--data", data,
                            "--json"])
    assert code == 0
    files = json.loads(out)["files"]
    assert files[-2:] == ["patient.json", "report.pdf"]
    assert [f.split("/")[0] for f in files[:-2]] == ["images"]
    assert (tmp_path / "exp" / "report.pdf").read_bytes().startswith(b"%PDF")
    assert json.loads((tmp_path / "exp" / "patient.json").read_text())["patient"]["name"] == "Una Example"

    code, out, _ = run_cli(["records", "backup", "--out", tmp_path / "bak", "--data", data, "--json"])
    assert (code, json.loads(out)["rows"]) == (0, 8)
    code, out, _ = run_cli(["records", "retention", "--years", "1", "--data", data])
    assert (code, out) == (0, "CLI-1\t2020-01-02\n")

    code, _, err = run_cli(["records", "erase", "--patient", "CLI-1", "--data", data])
    assert code == 2
    assert "admin" in err
    admin = ["--as-issuer", "https://idp.example", "--as-subject", "sub-admin"]
    code, _, err = run_cli(["records", "erase", "--patient", "CLI-1", "--data", data, *admin])
    assert (code, err.strip()) == (2, "cataract-cam: error: only an admin may erase a patient")
    assert run_cli(["records", "grant", "--issuer", "https://idp.example", "--subject", "sub-admin",
                    "--name", "Ada", "--role", "admin", "--data", data])[0] == 0
    code, out, _ = run_cli(["records", "erase", "--patient", "CLI-1", "--data", data, *admin, "--json"])
    assert (code, json.loads(out)) == (0, {"erased": {"exams": 1, "analyses": 0, "reviews": 1, "images": 1}})
    assert run_cli(["records", "verify", "--data", data])[0] == 0

    code, out, _ = run_cli(["records", "restore", "--from", tmp_path / "bak", "--data", tmp_path / "new", "--json"])
    assert (code, json.loads(out)) == (0, {"rows": 8, "ok": True, "problem": None})
    restored = RecordStore(data_dir=tmp_path / "new")
    try:
        assert restored.get_patient("CLI-1").name == "Una Example"
    finally:
        restored.close()


def test_the_command_line_anchors_and_verifies_against_the_anchor(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.DB_URL.name, raising=False)
    monkeypatch.setenv(config.ANCHOR.name, str(tmp_path / "chain.anchor"))
    store = RecordStore(data_dir=tmp_path / "data")
    try:
        store.create_patient("AN-4")
        exam = store.add_exam("AN-4", eye="OD", pixels=np.full((40, 60, 3), 90, np.uint8))
        store.sign_review(store.save_review(exam.id, author=DOC, agrees=True, finding="normal", grade="none").id,
                          signer=DOC)
    finally:
        store.close()
    assert len((tmp_path / "chain.anchor").read_text().splitlines()) == 1  # the signature anchored the head
    code, out, _ = run_cli(["records", "anchor", "--data", tmp_path / "data", "--json"])
    assert code == 0
    assert json.loads(out)["anchor"] == str(tmp_path / "chain.anchor")
    code, out, _ = run_cli(["records", "verify", "--anchor", "--data", tmp_path / "data", "--json"])
    assert (code, json.loads(out)["ok"]) == (0, True)
    code, out, _ = run_cli(["records", "verify", "--anchor", tmp_path / "chain.anchor", "--data", tmp_path / "new",
                            "--json"])
    assert code == 3
    assert "the database was cut back or rewritten" in json.loads(out)["problem"]
    monkeypatch.delenv(config.ANCHOR.name)
    code, _, err = run_cli(["records", "anchor", "--data", tmp_path / "data"])
    assert (code, err.strip()) == (2, "cataract-cam: error: No anchor is configured: set CATARACT_CAM_ANCHOR "
                                      "to a file or s3://bucket/prefix.")
