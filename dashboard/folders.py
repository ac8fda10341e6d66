"""Where the dashboard may read and write on the server: folders inside the data folder, uploads copied there."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from components.imaging.loading import IMAGE_EXTENSIONS
from components.records import data_dir
from components.records.settings import IMAGES_FOLDER
from components.workflows.audit import LabelledImage, read_labelled_folder
from components.workflows.runs import Upload

UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
"""The file types the photograph uploaders accept."""

MAX_UPLOAD_FILES = 24
"""The most photographs one upload box takes (Batch, Audit, Compare). Streamlit keeps every
uploaded file in the server's memory, up to 50 MB each, for as long as the box holds it; a
folder inside the data folder takes up to :data:`MAX_FOLDER_FILES`."""

MAX_FOLDER_FILES = 1000
"""The most photographs a page runs from a folder while a person waits on it: a page keeps every
result (a row and a thumbnail) for the session. The command line has no cap: it streams."""

OUTSIDE_DATA = ("Name a folder inside the data folder, for example audits/set1; the data folder itself and "
                "places outside it cannot be used.")
MISSING_FOLDER = "There is no such folder inside the data folder."
RECORDS_FOLDER = ("The record store's own photographs cannot be used as input; name a folder of photographs "
                  "to check instead.")


def too_many_uploads(count: int) -> str | None:
    """The one sentence refusing an upload of ``count`` photographs, or None when it is within the cap."""
    if count <= MAX_UPLOAD_FILES:
        return None
    return (f"At most {MAX_UPLOAD_FILES} photographs can be uploaded at once, got {count}; remove some, "
            "or put them in a folder inside the data folder.")


def too_many_files(count: int) -> str | None:
    """The one sentence refusing a page's run of ``count`` photographs from a folder, or None within the cap."""
    if count <= MAX_FOLDER_FILES:
        return None
    return (f"At most {MAX_FOLDER_FILES} photographs can be run from this page at once, got {count}; "
            "run `cataract-cam batch` or `cataract-cam audit` on the folder for any number.")


def data_subfolder(name: str) -> tuple[Path | None, str | None]:
    """The named sub-folder of the data folder, or None and why it cannot be used.

    Resolved first, so neither '..' nor a link can lead a page elsewhere on the server.
    """
    root = data_dir().resolve()
    candidate = (root / name.strip()).resolve()
    if candidate == root or not candidate.is_relative_to(root):
        return None, OUTSIDE_DATA
    if _in_records(candidate, root):
        return None, RECORDS_FOLDER
    return (candidate, None) if candidate.is_dir() else (None, MISSING_FOLDER)


def _in_records(path: Path, root: Path) -> bool:
    return path.is_relative_to(root / IMAGES_FOLDER)


def _confined(path: Path, root: Path) -> Path | None:
    """``path`` with every link followed, if that stays in the data folder and out of the records' own folders."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a dangling link or a loop of links
        return None
    return real if real.is_relative_to(root) and real != root and not _in_records(real, root) else None


def confined_files(folder: Path, files: Sequence[Path]) -> tuple[list[Path], list[str], int]:
    """The files of ``folder`` whose real place is inside the data folder (and not the record store's),
    their names relative to ``folder``, and how many were left out.

    A link in a chosen folder that points elsewhere on the server (or into the record store) is
    left out; the paths kept are the resolved ones, so what is read is what was checked.

    Raises:
        TypeError: ``files`` holds something that is not a path.
    """
    root = data_dir().resolve()
    kept: list[Path] = []
    names: list[str] = []
    for path in files:
        if not isinstance(path, Path):
            raise TypeError(f"confined_files expects paths, got {type(path).__name__}.")
        real = _confined(path, root)
        if real is not None:
            kept.append(real)
            names.append(path.relative_to(folder).as_posix())
    return kept, names, len(files) - len(kept)


def confined_items(items: Sequence[LabelledImage]) -> tuple[list[LabelledImage], int]:
    """:func:`confined_files` for a labelled folder: an image or a mask leading outside is left out (masks
    dropped, images counted).

    Raises:
        TypeError: ``items`` holds something that is not a LabelledImage.
    """
    root = data_dir().resolve()
    kept: list[LabelledImage] = []
    for item in items:
        if not isinstance(item, LabelledImage):
            raise TypeError(f"confined_items expects labelled images, got {type(item).__name__}.")
        real = _confined(item.path, root)
        if real is None:
            continue
        masks = {name: m for name, m in ((n, _confined(p, root)) for n, p in item.masks.items()) if m is not None}
        kept.append(dataclasses.replace(item, path=real, masks=masks))
    return kept, len(items) - len(kept)


LEFT_OUT = ("{n} file(s) in this folder lead outside the data folder or into the record store (a link) "
            "and were left out.")
"""The warning a page shows when :func:`confined_files` or :func:`confined_items` left files out."""


def _stored_name(upload: Upload, index: int) -> str:
    # Named by position, so no patient name reaches the disk; the suffix tells the decoder little
    # but keeps an image's type visible to anyone looking at the folder.
    suffix = Path(upload.name).suffix.lower()
    return f"{index:05d}{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"


def uploads_to_files(uploads: Sequence[Upload], folder: Path) -> tuple[list[Path], list[str]]:
    """Write the uploads into ``folder`` (a private temporary one); returns their paths and the user's names."""
    files, names = [], []
    for i, upload in enumerate(uploads):
        path = folder / _stored_name(upload, i)
        path.write_bytes(upload.getvalue())
        files.append(path)
        names.append(upload.name)
    return files, names


def uploads_to_items(uploads: Sequence[tuple[str, Sequence[Upload]]], folder: Path) -> list[LabelledImage]:
    """Write labelled uploads under ``folder/<i>/`` and read them back as a labelled folder, with the user's names."""
    known: dict[str, tuple[str, str]] = {}
    for i, (label, files) in enumerate(uploads):
        for j, upload in enumerate(files):
            # Numbered folders: a class name need not be a safe folder name.
            (folder / str(i)).mkdir(exist_ok=True)
            rel = f"{i}/{_stored_name(upload, j)}"
            (folder / rel).write_bytes(upload.getvalue())
            known[rel] = (label, upload.name)
    items = read_labelled_folder(folder)
    return [dataclasses.replace(item, label=known[item.file][0], file=known[item.file][1]) for item in items]
