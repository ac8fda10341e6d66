"""What the review screen needs from the engine, without Streamlit: images, maps, pictures, decisions, report inputs."""

from __future__ import annotations

import functools
import io
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
from PIL import Image, ImageDraw

from components.base.classifier import ClassifierLike
from components.explanation.cam import Explanation, explain
from components.explanation.overlay import colorbar, colorize, font, resize_map
from components.explanation.overlay import fit_within as fit_to_side
from components.imaging.loading import ImageError, decode_image, laterality_from_filename, sha256_bytes
from components.lens import attention
from components.lens.attention import AttentionResult
from components.records import (
    AnalysisRecord,
    ExamRecord,
    Identity,
    PatientRecord,
    RecordStore,
    ReviewRecord,
)
from components.report import EyeFindings, ModelInfo, PatientInfo, ReviewInfo, build_report
from components.screening.decision import ScreeningDecision, decide
from components.screening.vocabulary import attention_modality
from components.typicality.score import Typicality, assess, explain_options

__all__ = [
    "DISPLAY_MAX_SIDE",
    "PREDICTED",
    "BoundedCache",
    "EyeReport",
    "HeldUpload",
    "MapKey",
    "ReviewImage",
    "analysis_matches",
    "anonymous_id",
    "attention_for",
    "case_report",
    "downscale",
    "explain_cached",
    "export_report",
    "eye_decision",
    "eye_findings",
    "guess_modality",
    "heatmap_panel",
    "held_bytes",
    "image_from_pixels",
    "image_from_upload",
    "jpeg_bytes",
    "log_explanation",
    "map_key",
    "patient_info",
    "reattached",
    "record_analysis",
    "review_info",
    "review_status",
    "save_photo",
    "save_review",
    "stored_report",
    "typicality_for",
]

DISPLAY_MAX_SIDE = 1024
PREDICTED = "predicted"  # the "explain class" choice that follows the model's own prediction

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def held_bytes(value: object) -> int:
    """About how many bytes a cached value holds: its arrays, byte strings and text, with their containers.

    Counts what dominates a cache's memory (pixels, maps, encoded pictures); a callable or any
    other object counts only its own size.
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return sys.getsizeof(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        return sys.getsizeof(value) + sum(held_bytes(v) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(held_bytes(k) + held_bytes(v) for k, v in value.items())
    if is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(held_bytes(getattr(value, f.name)) for f in fields(value))
    return sys.getsizeof(value)


class BoundedCache(Generic[K, V]):
    """A least-recently-used mapping holding at most ``max_bytes`` (as ``sizeof`` counts them), safe between threads.

    A value larger than the whole budget is not stored at all.

    Raises:
        TypeError: ``max_bytes`` is not an integer.
        ValueError: ``max_bytes`` is below 1.
    """

    def __init__(self, max_bytes: int, *, sizeof: Callable[[V], int] = held_bytes) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an integer, got {type(max_bytes).__name__}.")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}.")
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: K, value: V) -> None:
        """Store ``value``, dropping the least recently used entries until the total fits."""
        size = max(1, int(self._sizeof(value)))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._held -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._held += size
            while self._held > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._held -= dropped

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._held = 0

    @property
    def held(self) -> int:
        """Bytes held now, as ``sizeof`` counted them when each entry was stored."""
        with self._lock:
            return self._held

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items


# Full-resolution photographs are large (18 MB at 6 megapixels) and needed only to explain, to
# check attention and to print: the last few are kept, the others are decoded again on demand.
RECENT_FULL_BYTES = 160 * 2**20
_RECENT_FULL: BoundedCache[str, np.ndarray] = BoundedCache(RECENT_FULL_BYTES)

REVIEW_MIN_SIDE = 1024
"""The review decodes a photograph down to this short side at least (see ``decode_image``'s
``min_side``): the model's largest input, the display copy (1024) and the report's pictures
(640) need no more, so nothing the review shows or prints loses detail, while a 100-megapixel
JPEG is held at about 5 MB. A photograph saved to a record is stored at this size too."""


class HeldUpload:
    """An upload's bytes, held by the session that received it; shared caches keep only a weak reference."""

    __slots__ = ("__weakref__", "data")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"An upload must be bytes, got {type(data).__name__}.")
        self.data = data


class _Reopen:
    """Decodes a held upload again, without keeping it alive (the session owns the bytes)."""

    def __init__(self, held: HeldUpload) -> None:
        self._held = weakref.ref(held)

    def __call__(self) -> np.ndarray:
        held = self._held()
        if held is None:
            raise ImageError("The photograph is no longer at hand; drop it again.")
        return decode_image(held.data, min_side=REVIEW_MIN_SIDE).pixels


@dataclass(frozen=True, eq=False)
class ReviewImage:
    """One photograph as the review screen holds it: a small copy for the screen, the full one on demand."""

    sha256: str  # of the upload's bytes, or the stored PNG's name
    display: np.ndarray  # at most DISPLAY_MAX_SIDE pixels on the long side, read-only
    display_jpeg: bytes  # the display copy encoded once, so a redraw does not encode it again
    laterality: str | None  # "OD"/"OS" from DICOM or the file name, else None
    original_size: tuple[int, int]  # (width, height)
    source: Callable[[], np.ndarray] = field(repr=False)  # decodes the full-resolution pixels

    def full(self) -> np.ndarray:
        """The full-resolution RGB pixels (read-only), for the model, the attention check and the report."""
        pixels = _RECENT_FULL.get(self.sha256)
        if pixels is None:
            pixels = _read_only(self.source())
            _RECENT_FULL.put(self.sha256, pixels)
        return pixels


def downscale(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """The image shrunk (area averaging) so that its long side is at most ``max_side``; never enlarged."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}.")
    # The same shrink the three-panel figure uses, so the screen and the CLI's pictures agree.
    return fit_to_side(pixels, max_side)


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    """RGB pixels as a JPEG for the screen: no metadata, full colour resolution (no chroma subsampling)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def _read_only(array: np.ndarray) -> np.ndarray:
    # A read-only view: shared between sessions, so nobody may paint on it.
    view = np.ascontiguousarray(array).view()
    view.setflags(write=False)
    return view


def image_from_pixels(sha256: str, pixels: np.ndarray, source: Callable[[], np.ndarray],
                      laterality: str | None = None) -> ReviewImage:
    """A ReviewImage from decoded RGB pixels; ``source`` gives the same pixels again when they are needed later."""
    full = _read_only(pixels)
    _RECENT_FULL.put(sha256, full)
    display = full if max(full.shape[:2]) <= DISPLAY_MAX_SIDE else _read_only(downscale(full))
    return ReviewImage(sha256=sha256, display=display, display_jpeg=jpeg_bytes(display),
                       laterality=laterality, original_size=(int(full.shape[1]), int(full.shape[0])),
                       source=source)


def image_from_upload(upload: HeldUpload, filename: str = "") -> ReviewImage:
    """Decode an upload safely at the review's size; laterality from DICOM, else the file name.

    The image keeps only a weak reference to the upload's bytes: see :func:`reattached`.

    Raises:
        TypeError: ``upload`` is not a :class:`HeldUpload`.
        ImageError: the upload is not a usable image.
    """
    if not isinstance(upload, HeldUpload):
        raise TypeError(f"Expected a HeldUpload, got {type(upload).__name__}.")
    decoded = decode_image(upload.data, min_side=REVIEW_MIN_SIDE)
    laterality = decoded.laterality or (laterality_from_filename(filename) if filename else None)
    return image_from_pixels(sha256_bytes(upload.data), decoded.pixels, _Reopen(upload), laterality)


def reattached(image: ReviewImage, upload: HeldUpload) -> ReviewImage:
    """The same image decoding its full pixels again from this session's ``upload`` when they are needed.

    A cached image may come from another session whose bytes are gone.

    Raises:
        TypeError: ``upload`` is not a :class:`HeldUpload`.
    """
    if not isinstance(upload, HeldUpload):
        raise TypeError(f"Expected a HeldUpload, got {type(upload).__name__}.")
    return replace(image, source=_Reopen(upload))


class MapKey(NamedTuple):
    """What a computed map depends on, and nothing else."""

    image_sha256: str
    model_sha256: str
    method: str
    target: str  # a class name, or PREDICTED
    layer: str


def map_key(image_sha256: str, classifier: ClassifierLike, *, method: str, target: str | None,
            layer: str | None = None) -> MapKey:
    """The cache key of one explanation; ``target`` None means the predicted class."""
    return MapKey(image_sha256, classifier.weights_sha256, method,
                  PREDICTED if target is None else target, layer or classifier.target_layer)


def explain_cached(cache: BoundedCache[MapKey, Explanation], classifier: ClassifierLike,
                   image: ReviewImage, *, method: str = "gradcam", target: str | None = None,
                   layer: str | None = None) -> tuple[Explanation, bool]:
    """The explanation of ``image`` from the cache, or computed on the full-resolution pixels and cached.

    Returns the explanation and whether the model ran. The model sees the whole photograph, as
    in training; the screen only ever gets the small copy. The explanation also keeps what
    typicality scores (a hundred numbers), so :func:`typicality_for` given it runs no model.
    """
    key = map_key(image.sha256, classifier, method=method, target=target, layer=layer)
    found = cache.get(key)
    if found is not None:
        return found, False
    (result,) = explain(classifier, [image.full()], method=method, target=target, layer=layer,
                        **explain_options(classifier))
    cache.put(key, result)
    return result, True


def analysis_matches(analysis: AnalysisRecord | None, classifier: ClassifierLike,
                     explanation: Explanation) -> bool:
    """True when a stored analysis already holds this model's result for this method, layer and target."""
    return (
        analysis is not None
        and analysis.model_sha256 == classifier.weights_sha256
        and analysis.method == explanation.method
        and analysis.layer == explanation.layer
        and analysis.target == explanation.target
    )


def record_analysis(store: RecordStore, exam_id: int, classifier: ClassifierLike,
                    explanation: Explanation, *, actor: Identity,
                    attention: AttentionResult | None = None) -> AnalysisRecord | None:
    """Store an exam's analysis unless its latest one is already the same; returns the new record or None."""
    if analysis_matches(store.latest_analysis(exam_id), classifier, explanation):
        return None
    return store.add_analysis(
        exam_id,
        model_sha256=classifier.weights_sha256,
        model_name=classifier.name,
        method=explanation.method,
        layer=explanation.layer,
        target=explanation.target,
        prediction=explanation.prediction,
        confidence=explanation.confidence,
        probabilities=explanation.probabilities,
        cam=explanation.cam,
        attention=attention,
        actor=actor,
    )


def log_explanation(store: RecordStore, classifier: ClassifierLike, image_sha256: str,
                    explanation: Explanation, *, exam_id: int | None, actor: Identity,
                    attention: AttentionResult | None = None) -> None:
    """Put a freshly computed map in the audit trail: an exam's analysis, or an unsaved image's entry.

    An unsaved photograph leaves only its SHA-256 and the model's answer, never its pixels.
    """
    if exam_id is not None:
        record_analysis(store, exam_id, classifier, explanation, actor=actor, attention=attention)
        return
    store.log("explained", actor=actor, object_type="unsaved_image", object_id=image_sha256,
              details={"model_sha256": classifier.weights_sha256,
                       "method": explanation.method, "target": explanation.target,
                       "prediction": explanation.prediction})


def heatmap_panel(cam: np.ndarray, size: tuple[int, int], colormap: str = "jet") -> np.ndarray:
    """The heatmap at ``size`` (width, height) with its colour bar and 0 / 0.5 / 1 ticks on the right, RGB uint8."""
    width, height = size
    heat = colorize(resize_map(cam, (width, height)), colormap)
    # Sized to the picture, so the ticks stay legible when the screen shows it at a third of its width.
    unit = max(10, round(max(width, height) / 24))
    gap, bar_w, label_w = unit // 3, round(unit * 0.8), round(unit * 2.2)
    canvas = Image.new("RGB", (width + gap + bar_w + label_w, height), (255, 255, 255))
    canvas.paste(Image.fromarray(heat), (0, 0))
    bar_x = width + gap
    canvas.paste(Image.fromarray(colorbar(height, bar_w, colormap)), (bar_x, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((bar_x, 0, bar_x + bar_w - 1, height - 1), outline=(90, 90, 90))
    text_font = font(max(9, round(unit * 0.75)))
    for frac, label in ((0.0, "1.0"), (0.5, "0.5"), (1.0, "0.0")):
        y = min(max(frac * (height - 1), unit * 0.5), height - 1 - unit * 0.5)
        draw.line((bar_x + bar_w, frac * (height - 1), bar_x + bar_w + 3, frac * (height - 1)),
                  fill=(90, 90, 90))
        draw.text((bar_x + bar_w + 5, y), label, fill=(50, 50, 50), font=text_font, anchor="lm")
    return np.asarray(canvas)


def typicality_for(cache: BoundedCache[tuple[str, str], Typicality], classifier: ClassifierLike,
                   image: ReviewImage, explanation: Explanation | None = None) -> Typicality:
    """How unlike the model's training photographs ``image`` is (full-resolution pixels, as the model sees), cached.

    ``explanation``: this image's explanation from :func:`explain_cached`, whose forward pass
    typicality then reuses instead of running the model again (the same result).
    """
    key = (image.sha256, classifier.weights_sha256 or str(id(classifier)))
    found = cache.get(key)
    if found is None:
        (found,) = assess(classifier, [image.full()],
                          explanations=None if explanation is None else [explanation])
        cache.put(key, found)
    return found


def attention_for(image: np.ndarray, explanation: Explanation, modality: str | None = None) -> AttentionResult:
    """The attention check's verdict, figures and region for one map.

    ``modality`` is the record's ("external", "slit_lamp", "fundus") or None to let the check tell.
    """
    return attention.check(image, explanation.cam, modality=attention_modality(modality))


def guess_modality(image: np.ndarray) -> str | None:
    """"external" or "fundus" as the attention check tells them apart, or None when it cannot."""
    found = str(attention.detect_modality(image))
    return found if found in ("external", "fundus") else None


def eye_decision(classifier: ClassifierLike, explanation: Explanation, checked: AttentionResult | None = None, *,
                 modality: str | None = None, eye: str | None = None) -> ScreeningDecision | None:
    """The screening decision for one eye, as the report makes it; None for a model without a Cataract class.

    The attention check's verdict goes in too: a map off the lens calls for referral on screen as
    in the report.
    """
    index = classifier.positive_index
    if index is None:
        return None
    positive = str(classifier.class_names[index])
    return decide(explanation.probabilities[positive], float(classifier.threshold),
                  attention_verdict=None if checked is None else checked.verdict,
                  modality=modality, eye=eye, positive_class=positive)


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

