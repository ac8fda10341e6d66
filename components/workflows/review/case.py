"""A patient's case as the review keeps and reports it: the report inputs, the PDF, reviews and photographs saved."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

import numpy as np

from components.base.cache import BoundedCache
from components.base.classifier import ClassifierLike
from components.explanation.cam import Explanation
from components.lens.attention import AttentionResult
from components.records import AnalysisRecord, ExamRecord, Identity, PatientRecord, RecordStore, ReviewRecord
from components.report import EyeFindings, ModelInfo, PatientInfo, ReviewInfo, build_report
from components.workflows.review.images import ReviewImage

__all__ = ["EyeReport", "anonymous_id", "case_report", "export_report", "eye_findings", "patient_info",
           "review_info", "review_status", "save_photo", "save_review", "stored_report"]

def review_status(review: ReviewRecord | None) -> str:
    """"unreviewed", "reviewed" (a draft) or "signed", as the worklist says it."""
    return "unreviewed" if review is None else review.status


def anonymous_id(image_sha256: str) -> str:
    """The report ID of an unsaved case: derived from the image, so it names nobody."""
    return f"ANON-{image_sha256[:8].upper()}"


def patient_info(record: PatientRecord) -> PatientInfo:
    """The report's patient block from a stored patient."""
    return PatientInfo(pseudo_id=record.pseudo_id, name=record.name, birth_date=record.birth_date,
                       sex=record.sex)


def review_info(record: ReviewRecord | None) -> ReviewInfo | None:
    """The report's review block from a stored review version (None when not reviewed)."""
    if record is None:
        return None
    return ReviewInfo(reviewer=record.reviewer, agrees=record.agrees, finding=record.finding,
                      grade=record.grade, notes=record.notes, signed_at=record.signed_at,
                      version=record.version)


def eye_findings(*, eye: str, image: ReviewImage, explanation: Explanation | None,
                 exam: ExamRecord | None = None, modality: str | None = None,
                 exam_date: date | None = None, review: ReviewRecord | None = None,
                 colormap: str = "jet", alpha: float = 0.5,
                 attention: AttentionResult | None = None,
                 typicality: Mapping[str, Any] | None = None) -> EyeFindings:
    """One eye's report input: the full-resolution photograph, the map and the review as shown on screen."""
    return EyeFindings(
        eye=exam.eye if exam is not None else eye,
        image=image.full(),
        explanation=explanation,
        exam_date=exam.exam_date if exam is not None else exam_date,
        modality=exam.modality if exam is not None else modality,
        colormap=colormap,
        alpha=float(alpha),
        attention=attention,
        review=review_info(review),
        typicality=typicality,
    )


def case_report(patient: PatientInfo, eyes: Sequence[EyeFindings], classifier: ClassifierLike, *,
                reviewer: str | None = None) -> bytes:
    """The case's PDF report built by ``components.report``."""
    return build_report(patient, eyes, ModelInfo.from_classifier(classifier), reviewer=reviewer)

EyeReport = Callable[[], EyeFindings]
"""An eye's report input, made only when the report is asked for: it needs the full photograph."""


def export_report(store: RecordStore, patient: PatientInfo, eye_reports: Sequence[EyeReport],
                  classifier: ClassifierLike, *, reviewer: str | None, saved: bool, actor: Identity) -> bytes:
    """Build the case's PDF and record the export in the audit trail (the patient is named only when saved)."""
    eyes = [make() for make in eye_reports]
    pdf = case_report(patient, eyes, classifier, reviewer=reviewer)
    store.log("exported", actor=actor, patient_pseudo_id=patient.pseudo_id if saved else None,
              object_type="report",
              details={"eyes": [e.eye for e in eyes], "model_sha256": str(classifier.weights_sha256),
                       "saved_patient": saved})
    return pdf


def save_review(store: RecordStore, exam_id: int, *, reviewer: Identity, agrees: bool, finding: str, grade: str,
                notes: str, draft: ReviewRecord | None, sign: bool) -> ReviewRecord:
    """Save the clinician's review as a new version after the draft shown, and sign it when asked.

    ``reviewer`` is the identity of the person at the screen: the author, and the signer when signing.

    Raises:
        RecordsError: refused (role, sign-in, a newer version) or not stored.
    """
    saved = store.save_review(exam_id, author=reviewer, agrees=agrees, finding=finding, grade=grade,
                              notes=notes, review_id=draft.id if draft is not None else None)
    return store.sign_review(saved.id, signer=reviewer) if sign else saved


def save_photo(store: RecordStore, cache: BoundedCache[str, ReviewImage], pseudo_id: str, image: ReviewImage, *,
               eye: str, exam_date: date, modality: str, actor: Identity) -> ExamRecord:
    """Add the photograph to the record (raises RecordsError or StorageError) and cache it under its stored name.

    The stored PNG holds the same pixels under another name, so the screen needs no second decode;
    from now on the full pixels come from the record, not from the upload.

    Raises:
        RecordsError: the record store refused the photograph.
        ImageError: the upload's bytes are no longer at hand.
    """
    exam = store.add_exam(pseudo_id, eye=eye, pixels=image.full(), exam_date=exam_date, modality=modality,
                          actor=actor)
    stored = functools.partial(store.get_image, exam.image_sha256)
    cache.put(exam.image_sha256, replace(image, sha256=exam.image_sha256, source=stored))
    return exam


def _stored_explanation(analysis: AnalysisRecord | None, classifier: ClassifierLike) -> Explanation | None:
    # A map made by another model is not this model's evidence: the report then shows none.
    if analysis is None or analysis.model_sha256 != str(classifier.weights_sha256):
        return None
    cam = np.asarray(analysis.cam, dtype=np.float32)
    return Explanation(prediction=analysis.prediction, confidence=analysis.confidence,
                       probabilities=dict(analysis.probabilities), target=analysis.target, cam=cam,
                       method=analysis.method, layer=analysis.layer, cam_lowres=cam, logits=(),
                       raw_max=float(cam.max(initial=0.0)), is_zero=not bool(cam.any()))


def stored_report(store: RecordStore, pseudo_id: str, classifier: ClassifierLike) -> bytes:
    """The PDF of a stored patient: each eye's latest exam, its latest analysis by this model and review.

    Raises:
        RecordsError: the patient or a photograph is not stored.
    """
    latest = {exam.eye: exam for exam in store.exams(pseudo_id)}  # oldest first, so the last per eye stays
    eyes = []
    for exam in latest.values():
        analysis = store.latest_analysis(exam.id)
        explanation = _stored_explanation(analysis, classifier)
        checked = analysis.attention if analysis is not None and explanation is not None else None
        eyes.append(EyeFindings(eye=exam.eye, image=store.get_image(exam.image_sha256), explanation=explanation,
                                exam_date=exam.exam_date, modality=exam.modality,
                                attention=checked,
                                review=review_info(store.latest_review(exam.id))))
    return build_report(patient_info(store.get_patient(pseudo_id)), eyes, ModelInfo.from_classifier(classifier))
