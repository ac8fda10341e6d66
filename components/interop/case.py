"""A patient's signed case from the records, as the dashboard sends it to the PACS and downloads it as FHIR.

The case is the report's own inputs (the eyes shown on screen, their signed reviews) and the PDF
built from them; its study UID is generated once and kept in the send ledger, its version grows
with every signed amendment, so a re-send of the same reviews reuses every SOP Instance UID.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from components.base.classifier import ClassifierLike
from components.imaging.loading import ImageError
from components.interop.dicomweb import PacsClient, photograph
from components.interop.exam import SignedExam
from components.interop.fhir import build_bundle
from components.interop.from_report import exam_key_for, signed_exam_from_report
from components.interop.ledger import SendAttempt, SendLedger, send_exam
from components.records import ExamRecord, Identity, RecordStore
from components.report import EyeFindings, ModelInfo, PatientInfo
from components.screening.vocabulary import EYES
from components.workflows.review import (
    attention_for,
    case_report,
    guess_modality,
    patient_info,
    review_info,
)

__all__ = ["PullOutcome", "case_from_records", "case_key", "case_status", "fhir_case", "pixels_sha256",
           "pull_into_record", "send_case", "signed_case"]


def _signed(eyes: Sequence[EyeFindings]) -> None:
    if not eyes:
        raise ValueError("The case has no eye with a result to send.")
    if any(e.review is None or e.review.signed_at is None for e in eyes):
        raise ValueError("Sign every eye's review before sending the results.")


def case_key(patient: PatientInfo, eyes: Sequence[EyeFindings]) -> tuple[str, int]:
    """The case's exam key and review version (the sum of its eyes' signed versions, so any amendment raises it).

    Raises:
        ValueError: an eye without a signed review.
    """
    _signed(eyes)
    return exam_key_for(patient.pseudo_id, eyes), sum(int(e.review.version) for e in eyes if e.review)


def case_status(ledger: SendLedger, patient: PatientInfo, eyes: Sequence[EyeFindings]) -> str:
    """"sent" or "not sent" for the case's current signed reviews ("not sent" while any eye is unsigned)."""
    try:
        key, version = case_key(patient, eyes)
    except ValueError:
        return "not sent"
    return ledger.status(key, version)


def signed_case(patient: PatientInfo, eyes: Sequence[EyeFindings], classifier: ClassifierLike, ledger: SendLedger, *,
                organization: str | None = None) -> SignedExam:
    """The case as a :class:`SignedExam`: the signed reviews, the model, the PDF, the study kept in the ledger.

    Raises:
        ValueError: an eye without a signed review, or a value the content model refuses.
    """
    key, version = case_key(patient, eyes)
    # Photographs pulled from the PACS keep their study and patient: their headers are in the ledger.
    sources = {e.eye: found for e in eyes if e.image is not None
               and (found := ledger.source(pixels_sha256(e.image))) is not None}
    reviews = [(e.review.signed_at, e.review) for e in eyes if e.review is not None and e.review.signed_at]
    signed_at, last = max(reviews, key=lambda pair: pair[0])
    pdf = case_report(patient, eyes, classifier, reviewer=last.reviewer)
    return signed_exam_from_report(patient, eyes, ModelInfo.from_classifier(classifier), pdf,
                                   signer=last.reviewer, signed_at=signed_at,
                                   sources=sources, study_uid=ledger.study_uid(key), exam_key=key,
                                   review_version=version,
                                   organization=organization)


def send_case(store: RecordStore, ledger: SendLedger, patient: PatientInfo, eyes: Sequence[EyeFindings],
              classifier: ClassifierLike, *, client: PacsClient, actor: Identity,
              organization: str | None = None) -> SendAttempt:
    """Send the case's SR, Secondary Captures and PDF; the attempt is kept and audited, failed or not.

    Raises:
        ValueError: an eye without a signed review.
    """
    exam = signed_case(patient, eyes, classifier, ledger, organization=organization)
    return send_exam(exam, ledger, actor=actor, client=client, store=store)


def fhir_case(store: RecordStore, ledger: SendLedger, patient: PatientInfo, eyes: Sequence[EyeFindings],
              classifier: ClassifierLike, *, actor: Identity, organization: str | None = None) -> bytes:
    """The case's FHIR Bundle as JSON bytes; the download is recorded in the audit trail.

    Raises:
        ValueError: an eye without a signed review.
    """
    exam = signed_case(patient, eyes, classifier, ledger, organization=organization)
    bundle = build_bundle(exam)
    store.log("exported", actor=actor, patient_pseudo_id=patient.pseudo_id, object_type="fhir_bundle",
              object_id=exam.exam_key[:64], details={"bundle": str(bundle["id"]), "eyes": [e.eye for e in eyes],
                                                     "review_version": exam.review_version})
    return json.dumps(bundle, indent=2).encode()


def case_from_records(store: RecordStore, pseudo_id: str,
                      classifier: ClassifierLike) -> tuple[PatientInfo, list[EyeFindings]]:
    """A stored patient's case as the Review page shows it: each eye's latest exam, explained, with its latest review.

    Raises:
        components.records.RecordsError: no such patient.
        ValueError: the patient has no photograph.
    """
    from components.explanation.cam import explain

    patient = store.get_patient(pseudo_id)
    exams = store.exams(pseudo_id)
    eyes = []
    for eye in EYES:
        own = [e for e in exams if e.eye == eye]
        if not own:
            continue
        exam = own[-1]
        image = store.get_image(exam.image_sha256)
        explanation = explain(classifier, [image])[0]
        checked = attention_for(image, explanation, exam.modality)
        eyes.append(EyeFindings(eye=eye, image=image, explanation=explanation, exam_date=exam.exam_date,
                                modality=exam.modality, attention=checked,
                                review=review_info(store.latest_review(exam.id))))
    if not eyes:
        raise ValueError("The patient has no photograph to export.")
    return patient_info(patient), eyes


def pixels_sha256(pixels: np.ndarray) -> str:
    """The SHA-256 of a photograph's decoded pixels: the same after the record's lossless PNG round trip."""
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@dataclass(frozen=True)
class PullOutcome:
    """What a pull added to the record, and why any photograph was left out (one sentence each)."""

    exams: tuple[ExamRecord, ...]
    skipped: tuple[str, ...]


def pull_into_record(store: RecordStore, ledger: SendLedger, client: PacsClient, study_uid: str, pseudo_id: str,
                     *, actor: Identity) -> PullOutcome:
    """Pull a study's eye photographs into a patient's record; each keeps its DICOM header in the ledger.

    A photograph without pixel data, in an unsupported transfer syntax or without laterality is
    left out with its reason; the others are added.

    Raises:
        components.interop.dicomweb.PacsError: the PACS failed (nothing was added).
        components.records.RecordsError: no such patient.
    """
    store.get_patient(pseudo_id)
    pulled = client.pull_photographs(study_uid)
    exams, skipped = [], []
    for number, ds in enumerate(pulled, 1):
        try:
            decoded = photograph(ds)
        except ImageError as exc:
            skipped.append(f"Photograph {number}: {exc}")
            continue
        if decoded.laterality is None:
            skipped.append(f"Photograph {number}: the DICOM says no laterality (R or L).")
            continue
        date = str(ds.get("StudyDate", "") or "")
        exam = store.add_exam(pseudo_id, eye=decoded.laterality, pixels=decoded.pixels,
                              exam_date=f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 else None,
                              modality=guess_modality(decoded.pixels) or "external", actor=actor)
        ledger.keep_source(pixels_sha256(decoded.pixels), ds)
        exams.append(exam)
    if not pulled:
        skipped.append("The study holds no eye photographs (no OP or XC series).")
    return PullOutcome(tuple(exams), tuple(skipped))
