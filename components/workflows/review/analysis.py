"""One photograph analysed for the review: its map (cached), the attention check, typicality, the decision."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from components.base.cache import BoundedCache
from components.base.classifier import ClassifierLike
from components.explanation.cam import Explanation, explain
from components.lens import attention
from components.lens.attention import AttentionResult
from components.records import AnalysisRecord, Identity, RecordStore
from components.screening.decision import ScreeningDecision, decide
from components.screening.vocabulary import attention_modality
from components.typicality.score import Typicality, assess, explain_options
from components.workflows.review.images import ReviewImage

__all__ = [
    "PREDICTED",
    "MapKey",
    "analysis_matches",
    "attention_for",
    "explain_cached",
    "eye_decision",
    "guess_modality",
    "log_explanation",
    "map_key",
    "record_analysis",
    "typicality_for",
]

PREDICTED = "predicted"  # the "explain class" choice that follows the model's own prediction


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
