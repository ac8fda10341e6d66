"""The package's seams: one vocabulary, the default data folder, the database's own checks, the review summary."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

import components.records as records
from components.base import config
from components.records import RecordStore
from components.records.settings import configured_data_dir, data_dir
from components.records.worklist import review_summary
from components.screening import vocabulary
from tests.support import ROOT


@pytest.mark.parametrize("name", ["EYES", "MODALITIES", "SEXES", "FINDINGS", "GRADES"])
def test_the_records_use_the_vocabulary_and_keep_no_copy(name: str) -> None:
    assert name not in records.__all__
    assert getattr(vocabulary, name)  # the one definition


def test_default_data_folder_is_the_checkouts_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.DATA.name, raising=False)
    assert configured_data_dir() == ROOT / "data"


def test_data_dir_creates_private_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DATA.name, str(tmp_path / "a" / "b"))
    assert data_dir() == tmp_path / "a" / "b"
    for level in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700


def test_database_refuses_codes_outside_the_vocabulary(folder: Path) -> None:
    RecordStore(data_dir=folder).close()
    with sqlite3.connect(folder / "records.sqlite3") as db:
        db.execute("INSERT INTO patients (pseudo_id, sex, created_at) VALUES ('OK', 'X', '2024-01-01')")
        with pytest.raises(sqlite3.IntegrityError, match="ck_patients_sex"):
            db.execute("INSERT INTO patients (pseudo_id, sex, created_at) VALUES ('BAD', 'female', '2024-01-01')")
        with pytest.raises(sqlite3.IntegrityError, match="ck_exams_modality"):
            db.execute(
                "INSERT INTO exams (patient_id, eye, exam_date, modality, image_sha256, created_at)"
                " VALUES (1, 'OD', '2024-01-01', 'xray', 'x', '2024-01-01')"
            )
        constraints = " ".join(sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"))
    db.close()
    assert "sex IN ('F', 'M', 'X')" in constraints
    assert "eye IN ('OD', 'OS')" in constraints
    assert "modality IN ('external', 'slit_lamp', 'fundus')" in constraints
    assert "finding IN ('normal', 'cataract')" in constraints
    assert "grade IN ('none', 'mild', 'moderate', 'severe')" in constraints
    assert "status IN ('reviewed', 'signed')" in constraints


@pytest.mark.parametrize(
    ("statuses", "summary"),
    [
        ([], "unreviewed"),
        ([None], "unreviewed"),
        (["signed", None], "unreviewed"),
        (["reviewed"], "reviewed"),
        (["signed", "reviewed"], "reviewed"),
        (["signed", "signed"], "signed"),
    ],
)
def test_review_summary(statuses: list[str | None], summary: str) -> None:
    assert review_summary(statuses) == summary
