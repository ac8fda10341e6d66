"""The patient's right of access: a patient without photographs exports, and a failed export logs nothing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from components.records import RecordStore
from components.report.content import ReportError
from components.workflows import patient_export
from tests.support import who

DR = who("Dr Ada Example")


@pytest.fixture
def store(tmp_path: Path):
    records = RecordStore(data_dir=tmp_path / "data")
    yield records
    records.close()


def _exports(store: RecordStore, pseudo_id: str) -> list[str]:
    return [e.action for e in store.audit_trail(pseudo_id) if e.object_type == "patient_export"]


def test_a_patient_without_photographs_exports_empty_sections(store: RecordStore) -> None:
    # Before the fix: ReportError (no exam to report), after the "exported" entry was written.
    store.create_patient("EMPTY-1", name="No Photographs Yet")
    archive = zipfile.ZipFile(io.BytesIO(patient_export.export_patient_zip(store, "EMPTY-1", None, actor=DR)))
    assert archive.namelist() == ["patient.json"]
    document = json.loads(archive.read("patient.json"))
    assert document["patient"]["name"] == "No Photographs Yet"
    assert (document["exams"], document["analyses"], document["reviews"]) == ([], [], [])
    assert _exports(store, "EMPTY-1") == ["exported"]


def test_an_export_whose_report_fails_writes_and_logs_nothing(store: RecordStore, tmp_path: Path, monkeypatch) -> None:
    store.create_patient("FAIL-1")
    store.add_exam("FAIL-1", eye="OD", pixels=np.zeros((24, 32, 3), np.uint8), actor=DR)

    def broken(*_args, **_kwargs):
        raise ReportError("The report cannot be made.")

    monkeypatch.setattr(patient_export, "stored_report", broken)
    folder = tmp_path / "out"
    with pytest.raises(ReportError):
        patient_export.export_patient(store, "FAIL-1", folder, None, actor=DR)
    assert not folder.exists()
    assert _exports(store, "FAIL-1") == []
