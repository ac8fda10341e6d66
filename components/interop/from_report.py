"""A :class:`SignedExam` from the PDF report's own inputs, so the exports say exactly what the report says.

The command line (``report --dicom-out``) and the dashboard both hold the report's ``EyeFindings``;
this turns them, the PDF built from them and the signer into the content the DICOM and FHIR
exports read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from components.base.files import atomic_write_bytes
from components.explanation.overlay import three_panel
from components.interop.dicom_files import write_objects
from components.interop.dicom_objects import build_objects
from components.interop.exam import EyeResult, ModelIdentity, Patient, SignedExam, derived_uid
from components.interop.fhir import build_bundle
from components.report import EyeFindings, ModelInfo, PatientInfo
from components.screening.decision import DEFAULT_BAND

__all__ = ["exam_key_for", "files_study_uid", "signed_exam_from_report", "write_exports"]


def exam_key_for(patient_id: str, eyes: Sequence[EyeFindings]) -> str:
    """A stable key for an exam made from files: the patient, and each eye's date and photograph.

    The same photographs give the same key, and so the same SOP Instance UIDs on every export.
    """
    digest = hashlib.sha256(patient_id.encode())
    for eye in sorted(eyes, key=lambda e: e.eye):
        digest.update(f"|{eye.eye}|{eye.exam_date}|".encode())
        if eye.image is not None:
            digest.update(hashlib.sha256(np.ascontiguousarray(eye.image).tobytes()).digest())
    return "files-" + digest.hexdigest()[:40]


def _eye(eye: EyeFindings, threshold: float, band: float, positive_class: str, source: Dataset | None) -> EyeResult:
    review = eye.review
    common: dict[str, Any] = {
        "eye": eye.eye, "threshold": threshold, "band": band, "modality": eye.modality, "source": source,
        "agrees": None if review is None else review.agrees,
        "clinician_finding": None if review is None else review.finding,
    }
    if eye.image is None or eye.explanation is None or not eye.gradable:
        return EyeResult(p=None, gradable=bool(eye.gradable and eye.image is not None), **common)
    panels = three_panel(eye.image, eye.explanation.cam, alpha=eye.alpha, colormap=eye.colormap)
    return EyeResult(p=float(eye.explanation.probabilities[positive_class]),
                     attention_verdict=None if eye.attention is None else eye.attention.verdict,
                     panels=np.ascontiguousarray(panels), **common)


def signed_exam_from_report(
    patient: PatientInfo,
    eyes: Sequence[EyeFindings],
    model: ModelInfo,
    pdf: bytes,
    *,
    signer: str,
    signed_at: datetime,
    sources: Mapping[str, Dataset] | None = None,
    study_uid: str | None = None,
    exam_key: str | None = None,
    review_version: int = 1,
    organization: str | None = None,
    band: float = DEFAULT_BAND,
    positive_class: str = "Cataract",
) -> SignedExam:
    """The signed exam behind a report: the same eyes, model and PDF, and the signer.

    ``sources`` maps an eye ("OD", "OS") to the DICOM its photograph came from; without any,
    ``study_uid`` (kept by the caller) is required. ``exam_key`` defaults to :func:`exam_key_for`.

    Raises:
        TypeError: wrong argument types.
        ValueError: a value the content model refuses, e.g. a model without a weights SHA-256.
    """
    if not isinstance(patient, PatientInfo) or not isinstance(model, ModelInfo):
        raise TypeError("signed_exam_from_report needs the report's PatientInfo and ModelInfo.")
    for eye in eyes:
        if not isinstance(eye, EyeFindings):
            raise TypeError(f"Each eye must be an EyeFindings, got {type(eye).__name__}.")
    sources = dict(sources or {})
    results = tuple(_eye(e, float(model.threshold), band, positive_class, sources.get(e.eye)) for e in eyes)
    dates = [e.exam_date for e in eyes if e.exam_date is not None]
    return SignedExam(
        exam_key=exam_key or exam_key_for(patient.pseudo_id, eyes),
        patient=Patient(patient.pseudo_id, patient.name, patient.birth_date, patient.sex),
        eyes=results, signer=signer, signed_at=signed_at, review_version=review_version,
        model=ModelIdentity(model.name, model.version, model.weights_sha256, is_demo=model.is_demo),
        pdf=pdf, study_uid=None if any(r.source is not None for r in results) else study_uid,
        exam_date=min(dates) if dates else None, organization=organization,
    )


def files_study_uid(exam_key: str) -> str:
    """The Study Instance UID of an exam made from files (no record keeps one): derived from its key,
    so exporting the same photographs again lands in the same study."""
    return derived_uid("study", exam_key)


def write_exports(exam: SignedExam, *, dicom_out: str | os.PathLike[str] | None = None,
                  fhir_out: str | os.PathLike[str] | None = None) -> list[Path]:
    """Write the exam's DICOM objects into ``dicom_out`` and its FHIR Bundle to ``fhir_out``.

    Raises:
        TypeError: exam is not a SignedExam.
        OSError: a file cannot be written.
    """
    if not isinstance(exam, SignedExam):
        raise TypeError(f"exam must be a SignedExam, got {type(exam).__name__}.")
    written: list[Path] = []
    if dicom_out is not None:
        written += write_objects(build_objects(exam).all(), dicom_out)
    if fhir_out is not None:
        target = Path(fhir_out)
        atomic_write_bytes(target, json.dumps(build_bundle(exam), indent=2).encode())
        written.append(target)
    return written
