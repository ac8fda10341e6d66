"""Writes that fail: photograph and row kept together or not at all, one sentence for a full or read-only store."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from components.records import RecordStore, StorageError
from components.records.errors import DISK_FULL, NOT_SAVED, READ_ONLY
from tests.support import ROOT


def _files(folder: Path) -> list[str]:
    # SQLite's own -wal and -shm files come and go with connections; the photographs must not.
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "sqlite3" not in p.name)


def test_read_only_database_leaves_no_orphan_photograph(folder: Path, make_pixels: Callable[..., np.ndarray]) -> None:
    writable = RecordStore(data_dir=folder)
    writable.create_patient("RO-1")
    writable.close()
    before = _files(folder)
    url = f"sqlite:///file:{(folder / 'records.sqlite3').resolve()}?mode=ro&uri=true"
    read_only = RecordStore(url, data_dir=folder)
    try:
        with pytest.raises(StorageError) as err:
            read_only.add_exam("RO-1", eye="OD", pixels=make_pixels(1))
        assert str(err.value) == READ_ONLY
        assert not (folder / "images").exists() or not any((folder / "images").iterdir())
        assert _files(folder) == before
        assert read_only.exams("RO-1") == []
    finally:
        read_only.close()


def test_a_photograph_already_stored_is_kept_when_a_second_insert_fails(
        folder: Path, make_pixels: Callable[..., np.ndarray]) -> None:
    writable = RecordStore(data_dir=folder)
    writable.create_patient("RO-2")
    kept = writable.add_exam("RO-2", eye="OD", pixels=make_pixels(2))
    writable.close()
    url = f"sqlite:///file:{(folder / 'records.sqlite3').resolve()}?mode=ro&uri=true"
    read_only = RecordStore(url, data_dir=folder)
    try:
        with pytest.raises(StorageError):
            read_only.add_exam("RO-2", eye="OS", pixels=make_pixels(2))
        # The same photograph is named by the first exam: removing it would damage that record.
        assert np.array_equal(read_only.get_image(kept.image_sha256), make_pixels(2))
    finally:
        read_only.close()


_FULL = """
import json, resource, signal, sys
from pathlib import Path
import numpy as np
from components.records import RecordStore
folder, limit, side = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = RecordStore(data_dir=folder)
store.create_patient("FULL-1")
# The kernel's file size limit makes every write past it fail, as a full disk does.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
try:
    store.add_exam("FULL-1", eye="OD", pixels=pixels)
    print(json.dumps({"saved": True}))
except Exception as error:
    print(json.dumps({"type": type(error).__name__, "message": str(error)}))
"""


@pytest.mark.parametrize(("limit", "side", "expected"), [(4096, 64, DISK_FULL), (40000, 8, NOT_SAVED)],
                         ids=["photograph-does-not-fit", "database-cannot-grow"])
def test_a_full_disk_is_one_sentence_and_nothing_half_written(tmp_path: Path, limit: int, side: int,
                                                              expected: str) -> None:
    folder = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CATARACT_CAM_DB_URL", None)
    done = subprocess.run([sys.executable, "-c", _FULL, str(folder), str(limit), str(side)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"type": "StorageError", "message": expected}
    assert "Traceback" not in done.stderr
    assert not [p for p in (folder / "images").rglob("*") if p.is_file()]
    store = RecordStore(data_dir=folder)  # the database is whole: the patient is there, no exam
    try:
        assert store.get_patient("FULL-1").pseudo_id == "FULL-1"
        assert store.exams("FULL-1") == []
    finally:
        store.close()


def test_database_and_its_wal_are_created_owner_only(folder: Path, make_pixels: Callable[..., np.ndarray]) -> None:
    folder.mkdir(mode=0o755)  # an existing folder with the default mode
    store = RecordStore(data_dir=folder)
    try:
        store.create_patient("MODE-1")
        store.add_exam("MODE-1", eye="OD", pixels=make_pixels(3))
        names = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}
        assert {"records.sqlite3", "records.sqlite3-wal", "records.sqlite3-shm"} <= set(names)
        assert all(mode == 0o600 for mode in names.values()), names
    finally:
        store.close()


def test_an_existing_database_made_0644_is_narrowed_to_0600(folder: Path) -> None:
    RecordStore(data_dir=folder).close()
    os.chmod(folder / "records.sqlite3", 0o644)
    RecordStore(data_dir=folder).close()
    assert stat.S_IMODE((folder / "records.sqlite3").stat().st_mode) == 0o600
