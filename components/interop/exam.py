"""The content of one signed exam as the DICOM and FHIR exports read it, and its identity rules.

A :class:`SignedExam` is built from files (the command line) or from the records (the dashboard);
every export takes its finding from :func:`components.screening.decision.decide` through
:meth:`EyeResult.decision`, so no export applies the threshold itself.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.screening.decision import DEFAULT_BAND, ScreeningDecision, decide
from components.screening.vocabulary import EYES, FINDINGS, SEXES, VERDICTS

__all__ = [
    "ExamError",
    "EyeResult",
    "ModelIdentity",
    "Patient",
    "SignedExam",
    "derived_uid",
    "new_study_uid",
]

_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cataract-cam:dicom-uids")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


class ExamError(CataractCamError, ValueError):
    """An exam cannot be exported as given; the message names the field and what was expected."""


def _require(value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise TypeError(f"{what} must be {names}, got {type(value).__name__}.")


def _check_uid(uid: str, what: str) -> str:
    _require(uid, str, what)
    if not (0 < len(uid) <= 64 and _UID.fullmatch(uid)):
        raise ExamError(f"{what} must be a DICOM UID (digits and dots, at most 64 characters).")
    return uid


def new_study_uid() -> str:
    """A fresh Study Instance UID for an exam whose photographs did not come from DICOM.

    The caller generates it once per exam and keeps it (the record store does), so every later
    export of the same exam lands in the same study.
    """
    return str(generate_uid())


def derived_uid(*parts: str) -> str:
    """A UID that depends only on ``parts``: the same exam, object and version give the same UID.

    Raises:
        TypeError: a part is not a string.
        ValueError: no parts.
    """
    if not parts:
        raise ValueError("derived_uid needs at least one part.")
    for part in parts:
        _require(part, str, "Each UID part")
    # A name-based UUID under the 2.25 root (DICOM PS3.5 B.2) needs no registered prefix.
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(parts)).int}"


@dataclass(frozen=True)
class Patient:
    """Who the exam is about. Only the pseudonymous ID is required; nothing else is ever invented.

    ``sex`` is one of :data:`components.screening.vocabulary.SEXES` (F, M, X).
    """

    pseudo_id: str
    name: str | None = None
    birth_date: date | None = None
    sex: str | None = None

    def __post_init__(self) -> None:
        _require(self.pseudo_id, str, "The patient's pseudonymous ID")
        if not self.pseudo_id.strip() or len(self.pseudo_id) > 64:
            raise ExamError("The patient's pseudonymous ID must be 1 to 64 characters.")
        if self.name is not None:
            _require(self.name, str, "The patient's name")
        if self.birth_date is not None and (
            not isinstance(self.birth_date, date) or isinstance(self.birth_date, datetime)
        ):
            raise TypeError("The birth date must be a datetime.date.")
        if self.sex is not None and self.sex not in SEXES:
            raise ExamError(f"Unknown sex {self.sex!r}; expected one of {', '.join(SEXES)}.")


@dataclass(frozen=True)
class ModelIdentity:
    """The algorithm as the exports name it: its name, version and the SHA-256 of its weights."""

    name: str
    version: str
    weights_sha256: str
    is_demo: bool = False

    def __post_init__(self) -> None:
        _require(self.name, str, "The model name")
        _require(self.version, str, "The model version")
        _require(self.weights_sha256, str, "The weights SHA-256")
        if not self.name.strip() or not self.version.strip():
            raise ExamError("The model needs a non-empty name and version.")
        if not _SHA256.fullmatch(self.weights_sha256):
            raise ExamError("The weights SHA-256 must be 64 lower-case hexadecimal digits.")

    @classmethod
    def from_classifier(cls, clf: ClassifierLike) -> ModelIdentity:
        """The identity of a loaded ``models.Classifier``.

        Raises:
            ExamError: the classifier's weights have no SHA-256.
        """
        card = dict(clf.card or {})
        version = card.get("version")
        return cls(name=str(clf.name), version=str(version) if version not in (None, "") else "unversioned",
                   weights_sha256=clf.weights_sha256, is_demo=bool(clf.is_demo))


@dataclass(frozen=True)
class EyeResult:
    """One eye of a signed exam: the model's output, the attention check and the clinician's review.

    ``panels`` is the three-panel picture (RGB uint8) that becomes the Secondary Capture;
    ``source`` the DICOM dataset the photograph came from (its header is enough), if any.
    ``agrees`` and ``clinician_finding`` (``normal`` or ``cataract``) are None when not recorded.
    """

    eye: str
    p: float | None
    threshold: float
    band: float = DEFAULT_BAND
    attention_verdict: str | None = None
    modality: str | None = None
    gradable: bool = True
    agrees: bool | None = None
    clinician_finding: str | None = None
    panels: np.ndarray | None = field(default=None, compare=False, repr=False)
    source: Dataset | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.eye not in EYES:
            raise ExamError(f"Unknown eye {self.eye!r}; expected 'OD' (right) or 'OS' (left).")
        if self.p is not None:
            _require(self.p, (float, int), "p(Cataract)")
            if not math.isfinite(self.p) or not 0.0 <= self.p <= 1.0:
                raise ExamError(f"p(Cataract) must lie in [0, 1], got {self.p!r}.")
        if self.attention_verdict is not None and self.attention_verdict not in VERDICTS:
            raise ExamError(f"Unknown attention verdict {self.attention_verdict!r}.")
        if self.agrees is not None:
            _require(self.agrees, bool, "The clinician's agreement")
        if self.clinician_finding is not None and self.clinician_finding not in FINDINGS:
            raise ExamError(f"Unknown clinician finding {self.clinician_finding!r}; expected normal or cataract.")
        if self.panels is not None:
            _require(self.panels, np.ndarray, "The panels")
            if self.panels.dtype != np.uint8 or self.panels.ndim != 3 or self.panels.shape[2] != 3:
                raise ExamError("The panels must be an RGB uint8 image (height, width, 3).")
        if self.source is not None:
            _require(self.source, Dataset, "The source DICOM")
            for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
                if not str(self.source.get(keyword, "") or ""):
                    raise ExamError(f"The source DICOM has no {keyword}; it cannot be referenced.")
        self.decision()  # threshold and band are checked by the one decision rule

    def decision(self) -> ScreeningDecision:
        """The screening decision for this eye, from the one rule.

        Raises:
            ValueError: the threshold or band is out of range.
        """
        return decide(self.p, self.threshold, band=self.band, gradable=self.gradable,
                      attention_verdict=self.attention_verdict, modality=self.modality, eye=self.eye)


@dataclass(frozen=True)
class SignedExam:
    """A signed review of one exam, ready to be exported.

    ``exam_key`` is the exam's stable identifier in the records; with ``review_version`` it fixes
    the SOP Instance UIDs of everything exported, so re-sending the same version reuses them.
    ``study_uid`` is required when no eye has a DICOM source (generate it once with
    :func:`new_study_uid` and keep it); with a DICOM source the study comes from the source.
    ``organization`` is the signer's organization, when the site configured one.
    """

    exam_key: str
    patient: Patient
    eyes: tuple[EyeResult, ...]
    signer: str
    signed_at: datetime
    review_version: int
    model: ModelIdentity
    pdf: bytes = field(repr=False)
    study_uid: str | None = None
    exam_date: date | None = None
    organization: str | None = None

    def __post_init__(self) -> None:
        _require(self.exam_key, str, "The exam key")
        _require(self.patient, Patient, "The patient")
        _require(self.model, ModelIdentity, "The model")
        _require(self.signed_at, datetime, "The signing time")
        _require(self.pdf, bytes, "The PDF report")
        _require(self.signer, str, "The signer")
        if self.organization is not None:
            _require(self.organization, str, "The organization")
        if not self.exam_key.strip():
            raise ExamError("The exam key must not be empty.")
        if not self.signer.strip():
            raise ExamError("A signed exam needs the signer's name.")
        if isinstance(self.review_version, bool) or not isinstance(self.review_version, int):
            raise TypeError("The review version must be an int.")
        if self.review_version < 1:
            raise ExamError("The review version starts at 1.")
        if not isinstance(self.eyes, tuple) or not self.eyes:
            raise ExamError("A signed exam needs a tuple of at least one eye.")
        for eye in self.eyes:
            _require(eye, EyeResult, "Each eye")
        if len({e.eye for e in self.eyes}) != len(self.eyes):
            raise ExamError("Each eye may appear once in an exam.")
        if not self.pdf.startswith(b"%PDF-"):
            raise ExamError("The report must be PDF bytes (starting with %PDF-).")
        studies = {str(e.source.StudyInstanceUID) for e in self.eyes if e.source is not None}
        if len(studies) > 1:
            raise ExamError("The eyes' DICOM photographs belong to different studies; export them separately.")
        if self.study_uid is not None:
            _check_uid(self.study_uid, "The study UID")
            if studies and self.study_uid not in studies:
                raise ExamError("The given study UID differs from the DICOM photographs' study.")
        elif not studies:
            raise ExamError("An exam without DICOM photographs needs the study UID kept in its record.")

    @property
    def source(self) -> Dataset | None:
        """The first DICOM source among the eyes (the study and patient come from it), if any."""
        return next((e.source for e in self.eyes if e.source is not None), None)

    @property
    def study_instance_uid(self) -> str:
        """The study every object goes into: the DICOM source's, else the one kept for the exam."""
        source = self.source
        return str(source.StudyInstanceUID) if source is not None else str(self.study_uid)

    def uid(self, kind: str, eye: str = "", *, versioned: bool = True) -> str:
        """The UID of one exported thing of this exam (an instance, or a series with versioned=False)."""
        version = str(self.review_version) if versioned else "series"
        return derived_uid(self.study_instance_uid, self.exam_key, kind, eye, version)

    def ordered_eyes(self) -> tuple[EyeResult, ...]:
        """The eyes right (OD) before left (OS), as every export lists them."""
        return tuple(sorted(self.eyes, key=lambda e: EYES.index(e.eye)))
