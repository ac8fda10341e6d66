"""Moving DICOM files between folders and a PACS: pull a study's photographs, send files study by study.

In a send, each study goes on its own: a study the PACS refuses, or a file that is not DICOM, is
reported and the others are sent all the same.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from components.interop.dicom_files import read_dicom_files, write_objects
from components.interop.dicomweb import PacsClient, PacsError
from components.interop.dimse import DimseTarget, c_store

__all__ = ["SendSummary", "StudySend", "pull_study", "send_datasets", "send_files"]


@dataclass(frozen=True)
class StudySend:
    """One study's send: the SOP Instance UIDs stored, those already there, or why it failed."""

    study_uid: str
    stored: tuple[str, ...] = ()
    already_present: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class SendSummary:
    """Every study's outcome, and the files that could not be read."""

    studies: tuple[StudySend, ...]
    bad_files: tuple[tuple[Path, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every file was read and every study sent."""
        return not self.bad_files and all(s.error is None for s in self.studies)


def pull_study(client: PacsClient, study_uid: str, folder: str | os.PathLike[str]) -> list[Path]:
    """Pull the study's eye photographs (series OP or XC) into ``folder``, one file per instance.

    Raises:
        TypeError: client is not a PacsClient.
        ValueError: the study holds no eye photographs.
        PacsError: the PACS failed.
        OSError: the folder cannot be written.
    """
    if not isinstance(client, PacsClient):
        raise TypeError(f"client must be a PacsClient, got {type(client).__name__}.")
    datasets = client.pull_photographs(study_uid)
    if not datasets:
        raise ValueError("The study holds no eye photographs (no OP or XC series).")
    return write_objects(datasets, folder)


def send_datasets(datasets: Sequence[Dataset], *, client: PacsClient | None = None,
                  dimse: DimseTarget | str | None = None) -> tuple[StudySend, ...]:
    """Send objects by DICOMweb (``client``) or C-STORE (``dimse``), one study at a time.

    Raises:
        ValueError: neither or both of client and dimse.
    """
    if (client is None) == (dimse is None):
        raise ValueError("Send either by DICOMweb or by DIMSE: give exactly one of the two.")
    by_study: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    outcomes = []
    for study, group in by_study.items():
        try:
            if client is not None:
                result = client.send(group)
                outcomes.append(StudySend(study, result.stored, result.already_present))
            else:
                assert dimse is not None
                outcomes.append(StudySend(study, tuple(c_store(group, dimse))))
        except PacsError as exc:
            outcomes.append(StudySend(study, error=str(exc)))
    return tuple(outcomes)


def send_files(sources: Sequence[str | os.PathLike[str]], *, client: PacsClient | None = None,
               dimse: DimseTarget | str | None = None) -> SendSummary:
    """Read DICOM files (and folders of them) and send them study by study.

    Raises:
        TypeError: sources is a single path rather than a sequence.
        ValueError: neither or both of client and dimse.
    """
    if (client is None) == (dimse is None):
        raise ValueError("Send either by DICOMweb or by DIMSE: give exactly one of the two.")
    batch = read_dicom_files(sources)
    studies = send_datasets(batch.datasets, client=client, dimse=dimse) if batch.datasets else ()
    return SendSummary(studies, batch.errors)
