"""Data-folder safety: links out of the data folder and the record store's own folders are refused as inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from components.workflows.audit import read_labelled_folder
from components.workflows.batch import collect_inputs
from dashboard import folders
from tests.dashboard.support import new_app


def _photo(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


def _escape(env: Path, outside: Path) -> Path:
    """A screening folder with one real photograph, a link out of the data folder and one into the records."""
    folder = env / "screening"
    _photo(folder / "a.png", 1)
    _photo(env / "images" / "ab" / "stored.png", 2)
    (folder / "sub").mkdir()
    (folder / "sub" / "secret.png").symlink_to(_photo(outside / "secret.png", 3))
    (folder / "records.png").symlink_to(env / "images" / "ab" / "stored.png")
    (folder / "dangling.png").symlink_to(env / "gone.png")
    (folder / "inside.png").symlink_to(folder / "a.png")  # a link that stays inside is fine
    return folder


def test_the_record_stores_images_are_refused_as_a_folder(env: Path) -> None:
    _photo(env / "images" / "ab" / "stored.png", 2)
    for name in ("images", "images/ab", "./images/", "screening/../images"):
        assert folders.data_subfolder(name) == (None, folders.RECORDS_FOLDER)
    (env / "screening").mkdir()
    (env / "screening" / "images").mkdir()  # a folder of that name elsewhere is not the store's
    assert folders.data_subfolder("screening/images") == ((env / "screening" / "images").resolve(), None)


def test_a_link_into_the_records_folder_is_refused(env: Path) -> None:
    (env / "screening").mkdir(parents=True)
    (env / "images").mkdir()
    (env / "screening" / "store").symlink_to(env / "images")
    assert folders.data_subfolder("screening/store") == (None, folders.RECORDS_FOLDER)


def test_links_out_of_the_data_folder_are_left_out_of_a_batch(env: Path, tmp_path: Path) -> None:
    folder = _escape(env, tmp_path / "elsewhere")
    found = collect_inputs([folder])
    assert len(found) == 4  # the dangling link is no file
    files, names, outside = folders.confined_files(folder, found)
    assert names == ["a.png", "inside.png"]
    assert files == [(folder / "a.png").resolve()] * 2
    assert outside == 2
    assert folders.confined_files(folder, [folder / "dangling.png"]) == ([], [], 1)


def test_links_out_are_left_out_of_an_audit_with_their_masks(env: Path, tmp_path: Path) -> None:
    root = env / "audit"
    _photo(root / "cataract" / "c1.png", 4)
    (root / "normal").mkdir(parents=True)
    (root / "normal" / "n1.png").symlink_to(_photo(tmp_path / "out" / "n1.png", 5))
    _photo(root / "normal" / "n2.png", 6)
    (root / "masks").mkdir()
    (root / "masks" / "c1_pupil.png").symlink_to(_photo(tmp_path / "out" / "mask.png", 7))
    _photo(root / "masks" / "n2_pupil.png", 8)
    items, outside = folders.confined_items(read_labelled_folder(root))
    assert outside == 1
    assert [(i.file, i.label, sorted(i.masks)) for i in items] == [("cataract/c1.png", "cataract", []),
                                                                  ("normal/n2.png", "normal", ["pupil"])]


def test_batch_page_shows_only_the_photographs_inside_and_says_what_it_left_out(env: Path, clf,
                                                                                 tmp_path: Path) -> None:
    _escape(env, tmp_path / "elsewhere")
    at = new_app()
    at.switch_page("views/batch.py").run()
    at.radio(key="batch_source").set_value("folder").run()
    at.text_input(key="batch_folder").set_value("images").run()
    assert [e.value for e in at.error] == [folders.RECORDS_FOLDER]
    at.text_input(key="batch_folder").set_value("screening").run()
    next(b for b in at.button if b.label == "Run batch").click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning if "left out" in w.value] == [folders.LEFT_OUT.format(n=2)]
    assert list(at.dataframe[0].value["File"]) == ["a.png", "inside.png"]


def test_a_full_disk_on_the_batch_page_is_one_sentence(env: Path, clf, monkeypatch) -> None:
    import errno

    from components.records.errors import DISK_FULL

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/where/patient.jpg")

    # Where the page copies the uploads into the data folder, the disk is full.
    monkeypatch.setattr(folders, "uploads_to_files", full)
    at = new_app()
    at.switch_page("views/batch.py").run()
    at.file_uploader(key="batch_uploads").upload("eye.png", _png(), "image/png")
    at.run()
    next(b for b in at.button if b.label == "Run batch").click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [DISK_FULL]
    assert [p for p in env.rglob("*") if p.is_file() and not p.name.startswith("records.sqlite3")] == []


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
