"""DICOM objects to and from folders, for the command line: write them whole, read a batch, sniff a source.

File names are the SOP Instance UID (never anything about the patient); a file is written to a
temporary name and renamed, so a folder never holds half an object; in a batch, a file that is
not DICOM is reported and the others are read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from components.base.files import atomic_write_bytes
from components.interop.dicomweb import dataset_bytes

__all__ = ["DicomBatch", "dicom_source", "is_dicom_file", "read_dicom_files", "write_objects"]

_KINDS = {"1.2.840.10008.5.1.4.1.1.88.33": "SR", "1.2.840.10008.5.1.4.1.1.7": "SC",
          "1.2.840.10008.5.1.4.1.1.104.1": "PDF"}


@dataclass(frozen=True)
class DicomBatch:
    """What a batch read gave: the datasets, and for each file that failed, its path and why."""

    datasets: tuple[Dataset, ...]
    paths: tuple[Path, ...]
    errors: tuple[tuple[Path, str], ...]


def _file_name(ds: Dataset) -> str:
    kind = _KINDS.get(str(ds.get("SOPClassUID", "")), str(ds.get("Modality", "") or "DICOM"))
    return f"{kind}_{ds.SOPInstanceUID}.dcm"


def write_objects(datasets: Iterable[Dataset], folder: str | os.PathLike[str]) -> list[Path]:
    """Write each object as ``KIND_<SOP Instance UID>.dcm`` in ``folder`` (created); returns the paths.

    Raises:
        TypeError: an item is not a Dataset.
        ValueError: an object has no SOP Instance UID.
        OSError: the folder cannot be written.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        if not isinstance(ds, Dataset):
            raise TypeError(f"Each object must be a pydicom Dataset, got {type(ds).__name__}.")
        if not str(ds.get("SOPInstanceUID", "") or ""):
            raise ValueError("An object without a SOP Instance UID cannot be written.")
        target = out / _file_name(ds)
        atomic_write_bytes(target, dataset_bytes(ds))
        paths.append(target)
    return paths


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with a DICOM Part 10 preamble ("DICM" at byte 128).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def dicom_source(path: str | os.PathLike[str]) -> Dataset | None:
    """The header of a DICOM photograph (to take study and patient from), or None for other files.

    Raises:
        OSError: the file cannot be read.
        ValueError: it says it is DICOM but its header cannot be read or lacks its UIDs.
    """
    if not is_dicom_file(path):
        return None
    try:
        header = dcmread(path, stop_before_pixels=True)
    except Exception:  # pydicom raises many kinds on malformed headers
        header = None
    if header is None or not all(str(header.get(k, "") or "") for k in ("SOPClassUID", "SOPInstanceUID",
                                                                        "StudyInstanceUID")):
        raise ValueError("The DICOM file's header cannot be read or lacks its study and instance UIDs.")
    return header


def _expand(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def read_dicom_files(sources: Sequence[str | os.PathLike[str]]) -> DicomBatch:
    """Read DICOM files named, or found in folders (every file, recursively); bad files are listed.

    Raises:
        TypeError: sources is a single string rather than a sequence.
    """
    if isinstance(sources, (str, os.PathLike)):
        raise TypeError("sources must be a sequence of paths, not one path.")
    datasets, paths, errors = [], [], []
    for path in _expand(sources):
        try:
            if not path.is_file():
                raise ValueError("No such file.")
            if not is_dicom_file(path):
                raise ValueError("Not a DICOM file (no DICM preamble).")
            try:
                ds = dcmread(path)
            except Exception:  # pydicom raises many kinds on malformed files
                raise ValueError("The DICOM file cannot be read: it is damaged or incomplete.") from None
            if not str(ds.get("SOPInstanceUID", "") or "") or not str(ds.get("StudyInstanceUID", "") or ""):
                raise ValueError("The DICOM file has no SOP Instance UID or Study Instance UID.")
        except (OSError, ValueError) as exc:
            errors.append((path, str(exc) if isinstance(exc, ValueError) else "The file cannot be read."))
            continue
        datasets.append(ds)
        paths.append(path)
    return DicomBatch(tuple(datasets), tuple(paths), tuple(errors))
