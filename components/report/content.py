"""What a report is built from: the patient, each eye's examination and review, and the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import numpy as np

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.explanation.cam import Explanation
from components.explanation.overlay import COLORMAPS
from components.lens.attention import AttentionResult
from components.screening.notes import NOTES_MAX_CHARS, tidy_notes
from components.screening.vocabulary import EYE_LABELS

__all__ = [
    "NOT_REVIEWED",
    "NOT_SIGNED",
    "REPORT_TITLE",
    "EyeFindings",
    "ModelInfo",
    "PatientInfo",
    "ReportError",
    "ReviewInfo",
    "checked_eye",
]

REPORT_TITLE: Final = "Cataract screening report"
NOT_REVIEWED: Final = "NOT YET REVIEWED"
NOT_SIGNED: Final = "REVIEW NOT YET SIGNED"


class ReportError(CataractCamError, ValueError):
    """The inputs to a report were malformed; the message says which field and what was expected."""


@dataclass(frozen=True)
class PatientInfo:
    """Who the report is about; only the pseudonymous ID is required."""

    pseudo_id: str
    name: str | None = None
    birth_date: date | None = None
    sex: str | None = None


@dataclass(frozen=True)
class ReviewInfo:
    """A clinician's review of one eye's result; ``signed_at`` is None for an unsigned draft."""

    reviewer: str
    agrees: bool | None
    finding: str | None
    grade: str | None
    notes: str = ""
    signed_at: datetime | None = None
    version: int = 1


@dataclass(frozen=True)
class EyeFindings:
    """One eye's examination: the photograph, the model's explanation and the clinician's review."""

    eye: str  # "OD" or "OS"
    image: np.ndarray | None  # original RGB uint8 photograph (full size); None when unreadable
    explanation: Explanation | None
    exam_date: date | None = None
    modality: str | None = None  # "external", "slit_lamp", "fundus"
    gradable: bool = True
    ungradable_reason: str | None = None
    colormap: str = "jet"
    alpha: float = 0.5
    # The attention check, when it ran: its verdict (an off-lens one also refers the eye, see
    # components.screening.decision.decide), its figures, and the region it used, outlined on the
    # photograph in the attention section as the dashboard's outline toggle draws it.
    attention: AttentionResult | None = None
    faithfulness: Mapping[str, Any] | None = None
    review: ReviewInfo | None = None
    # components.typicality.score.Typicality.report_fields(): {"text", "unlike_training"}, printed as given.
    typicality: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about the model that produced the results."""

    name: str
    version: str
    weights_sha256: str
    threshold: float
    is_demo: bool
    card: Mapping[str, Any]

    @classmethod
    def from_classifier(cls, clf: ClassifierLike) -> ModelInfo:
        """The model's description from a loaded ``models.Classifier`` (or anything like one)."""
        card = dict(clf.card or {})
        version = card.get("version")
        return cls(
            name=str(clf.name),
            version=str(version) if version not in (None, "") else "unversioned",
            weights_sha256=str(clf.weights_sha256 or ""),
            threshold=float(clf.threshold),
            is_demo=bool(clf.is_demo),
            card=card,
        )


def checked_eye(eye: EyeFindings) -> EyeFindings:
    """The eye unchanged when its fields are usable.

    Raises:
        ReportError: not an EyeFindings, an unknown eye, an image that is not RGB uint8, an
            unknown colormap, a transparency outside [0, 1], or review notes that are not text or
            are longer than NOTES_MAX_CHARS once tidied.
    """
    if not isinstance(eye, EyeFindings):
        raise ReportError(f"Each eye must be an EyeFindings, got {type(eye).__name__}.")
    if eye.eye not in EYE_LABELS:
        raise ReportError(f"Unknown eye {eye.eye!r}; expected 'OD' (right) or 'OS' (left).")
    img = eye.image
    if img is not None and (
        not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3
    ):
        got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ReportError(f"The {eye.eye} image must be an RGB uint8 array of shape (H, W, 3), got {got}.")
    if eye.colormap not in COLORMAPS:
        raise ReportError(f"Unknown colormap {eye.colormap!r}; expected one of {', '.join(COLORMAPS)}.")
    if not 0.0 <= float(eye.alpha) <= 1.0:
        raise ReportError(f"The overlay transparency alpha must lie in [0, 1], got {eye.alpha}.")
    review = eye.review
    if review is not None and (not isinstance(review.notes, str) or len(tidy_notes(review.notes)) > NOTES_MAX_CHARS):
        raise ReportError(f"The {eye.eye} review's notes must be text of at most {NOTES_MAX_CHARS} characters.")
    return eye
