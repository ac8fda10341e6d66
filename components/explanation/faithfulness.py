"""Does the map explain the model? Deletion and insertion curves, confidence drop, and sanity checks.

A faithful map ranks pixels by how much the model relies on them: deleting the most-attended
pixels first should make the explained class's probability fall fast (a small deletion area),
inserting them first into a blurred image should make it rise fast (a large insertion area).
The randomisation check (Adebayo et al., 2018) re-initialises the head and the last blocks of a
private copy of the model: a map that barely changes (high Spearman rank correlation with the
original) does not depend on what the model learnt, whatever it looks like.

The model is only run forward, in inference mode, on copies of the images; the shared model is
never modified (the randomised model is a deep copy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.explanation.cam import explain, resolve_targets

__all__ = [
    "BASELINES",
    "RANDOMISATION_MAX_RHO",
    "Curve",
    "FaithfulnessError",
    "FaithfulnessResult",
    "RandomisationResult",
    "confidence_change",
    "curve_auc",
    "deletion_insertion",
    "evaluate",
    "lens_test",
    "randomisation_check",
    "randomised_copy",
    "spearman",
]

BASELINES: tuple[str, ...] = ("blur", "grey")
# Blur strong enough to wipe out a lens opacity yet keep the image's overall colour: a sigma of
# a tenth of the input side.
BLUR_SIGMA_FRACTION = 0.1
# The randomisation check passes when the mean absolute Spearman correlation between the maps of
# the model and of its randomised copy lies below this (absolute: a map turned upside down
# still follows the image, not the model). Re-initialising the head and the last two blocks
# brought demo model 1.0's maps to |rho| 0.06-0.49, mean 0.31 (16 synthetic eyes; demo model 1.1:
# mean 0.24 on seed 8181 of generator 1.1), a randomly
# initialised EfficientNet-B0's lower still; a map that does not depend on the weights (an edge
# detector) stays at 1.0.
RANDOMISATION_MAX_RHO = 0.5
DEFAULT_RANDOM_BLOCKS = 2
CLEAR_PUPIL_LEVEL = 18.0  # grey level (0-255) of a clear pupil, the brightest a cleared lens is painted


class FaithfulnessError(CataractCamError, ValueError):
    """A request to measure faithfulness was malformed (map shape, steps, baseline, target)."""


@dataclass(frozen=True)
class Curve:
    """Probability of the explained class as a growing fraction of pixels is deleted or inserted."""

    fractions: tuple[float, ...]
    scores: tuple[float, ...]
    auc: float

    def as_dict(self) -> dict[str, Any]:
        return {"fractions": [round(f, 4) for f in self.fractions],
                "scores": [round(s, 6) for s in self.scores], "auc": round(self.auc, 6)}


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion, insertion and confidence figures for one image and its map."""

    target: str
    deletion: Curve
    insertion: Curve
    confidence: float  # probability of the target on the whole image
    masked_confidence: float  # on the image multiplied by its map
    drop: float  # max(0, confidence - masked) / confidence, as in "average drop"
    increase: bool  # the masked image raised the target's probability

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "deletion_auc": round(self.deletion.auc, 6),
                "insertion_auc": round(self.insertion.auc, 6), "confidence": round(self.confidence, 6),
                "masked_confidence": round(self.masked_confidence, 6), "drop": round(self.drop, 6),
                "increase": self.increase, "deletion": self.deletion.as_dict(),
                "insertion": self.insertion.as_dict()}


@dataclass(frozen=True)
class LensTest:
    """The target's probability before and after the lens region is painted as a clear (dark) pupil."""

    target: str
    probability: float
    clear_lens_probability: float

    @property
    def drop(self) -> float:
        return self.probability - self.clear_lens_probability

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "probability": round(self.probability, 6),
                "clear_lens_probability": round(self.clear_lens_probability, 6), "drop": round(self.drop, 6)}


@dataclass(frozen=True)
class RandomisationResult:
    """Spearman correlation per image between the maps of the model and of its randomised copy."""

    correlations: tuple[float, ...]
    mean: float  # of the absolute correlations
    threshold: float
    passed: bool  # mean < threshold: the maps depend on the learnt weights
    reinitialised: tuple[str, ...]  # module names re-initialised in the copy

    def as_dict(self) -> dict[str, Any]:
        return {"correlations": [round(c, 4) for c in self.correlations], "mean": round(self.mean, 4),
                "threshold": self.threshold, "passed": self.passed, "reinitialised": list(self.reinitialised)}


# ========================================================================== plain arithmetic


def curve_auc(fractions: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under a curve by the trapezoid rule (fractions ascending from 0 to 1)."""
    x = np.asarray(fractions, np.float64)
    y = np.asarray(scores, np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise FaithfulnessError(f"Expected two equal 1-D sequences of at least 2 points, got {x.shape} and {y.shape}.")
    if np.any(np.diff(x) < 0):
        raise FaithfulnessError("The fractions must be in ascending order.")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of one shape; 0.0 when either is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise FaithfulnessError(f"The maps have {a.size} and {b.size} values; expected the same number.")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    # A constant map ranks nothing: no evidence of dependence either way.
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


# =========================================================================== model plumbing


def _model_input(classifier: ClassifierLike, image: np.ndarray) -> np.ndarray:
    """The image at the model's square input size, resized exactly as preprocessing does."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise FaithfulnessError(f"Expected an RGB uint8 image of shape (H, W, 3), got {got}.")
    size = int(classifier.input_size)
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _map_at_input(classifier: ClassifierLike, cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam)
    if cam.ndim != 2 or not np.issubdtype(cam.dtype, np.floating) or not np.isfinite(cam).all():
        raise FaithfulnessError(f"Expected a finite 2-D float map, got {cam.dtype} array of shape {cam.shape}.")
    size = int(classifier.input_size)
    if cam.shape != (size, size):
        cam = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return cam.astype(np.float64)


def _probabilities(classifier: ClassifierLike, images: Sequence[np.ndarray], index: int,
                   batch_size: int) -> np.ndarray:
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits = classifier.model(classifier.preprocess(list(images[start:start + batch_size])))
            out.append(torch.softmax(logits.double(), dim=1)[:, index].numpy())
    return np.concatenate(out)


def _target_index(classifier: ClassifierLike, image: np.ndarray, target: Any, batch_size: int) -> int:
    (index,) = resolve_targets(classifier.class_names, target, 1)
    if index is not None:
        return index
    with torch.inference_mode():
        logits = classifier.model(classifier.preprocess([image]))
    return int(logits.argmax(dim=1)[0])


def _baseline(image: np.ndarray, baseline: str) -> np.ndarray:
    if baseline == "blur":
        sigma = BLUR_SIGMA_FRACTION * image.shape[0]
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if baseline == "grey":
        return np.full_like(image, 128)
    raise FaithfulnessError(f"Unknown baseline {baseline!r}; expected one of {', '.join(BASELINES)}.")


# ================================================================= deletion and insertion


def deletion_insertion(classifier: ClassifierLike, image: np.ndarray, cam: np.ndarray, *, target: Any = None,
                       steps: int = 10, baseline: str = "blur", batch_size: int = 16) -> tuple[Curve, Curve]:
    """Deletion and insertion curves for one image, most-attended pixels first, in ``steps`` equal steps.

    Deletion replaces the top pixels of the map by the baseline (a strong blur or flat grey);
    insertion starts from the baseline and puts them back. Ties in the map keep raster order.
    ``target``: the class to follow (default: the one predicted on the whole image).
    """
    if not isinstance(steps, int) or steps < 1:
        raise FaithfulnessError(f"steps must be a positive integer, got {steps!r}.")
    x = _model_input(classifier, image)
    base = _baseline(x, baseline)
    rank = _map_at_input(classifier, cam)
    index = _target_index(classifier, x, target, batch_size)
    n = rank.size
    order = np.argsort(-rank.ravel(), kind="stable")
    fractions = [k / steps for k in range(steps + 1)]
    counts = [round(f * n) for f in fractions]
    flat_x, flat_b = x.reshape(n, 3), base.reshape(n, 3)
    deleted, inserted = [], []
    for c in counts:
        chosen = order[:c]
        d = flat_x.copy()
        d[chosen] = flat_b[chosen]
        deleted.append(d.reshape(x.shape))
        i = flat_b.copy()
        i[chosen] = flat_x[chosen]
        inserted.append(i.reshape(x.shape))
    probs = _probabilities(classifier, deleted + inserted, index, batch_size)
    del_scores, ins_scores = probs[: steps + 1], probs[steps + 1:]
    return (Curve(tuple(fractions), tuple(float(p) for p in del_scores), curve_auc(fractions, del_scores)),
            Curve(tuple(fractions), tuple(float(p) for p in ins_scores), curve_auc(fractions, ins_scores)))


def confidence_change(classifier: ClassifierLike, image: np.ndarray, cam: np.ndarray, *, target: Any = None,
                      batch_size: int = 16) -> tuple[float, float, float, bool]:
    """(confidence, masked confidence, drop, increase) for the image multiplied pixel-wise by its map.

    The "average drop" and "increase in confidence" of Chattopadhay et al. (2018): keeping only
    what the map points at should keep the prediction.
    """
    x = _model_input(classifier, image)
    cam = np.clip(_map_at_input(classifier, cam), 0.0, None)
    peak = cam.max()
    weights = cam / peak if peak > 0 else cam
    masked = np.rint(x.astype(np.float64) * weights[..., None]).astype(np.uint8)
    index = _target_index(classifier, x, target, batch_size)
    full, kept = _probabilities(classifier, [x, masked], index, batch_size)
    drop = max(0.0, float(full - kept)) / float(full) if full > 0 else 0.0
    return float(full), float(kept), drop, bool(kept > full)


def evaluate(classifier: ClassifierLike, image: np.ndarray, cam: np.ndarray | None = None, *,
             target: Any = None, method: str = "gradcam", steps: int = 10, baseline: str = "blur",
             batch_size: int = 16) -> FaithfulnessResult:
    """All per-image faithfulness figures; the map is computed with ``method`` when not given."""
    x = _model_input(classifier, image)
    index = _target_index(classifier, x, target, batch_size)
    if cam is None:
        cam = explain(classifier, [x], method=method, target=index)[0].cam
    deletion, insertion = deletion_insertion(classifier, x, cam, target=index, steps=steps, baseline=baseline,
                                             batch_size=batch_size)
    full, kept, drop, increase = confidence_change(classifier, x, cam, target=index, batch_size=batch_size)
    return FaithfulnessResult(classifier.class_names[index], deletion, insertion, full, kept, drop, increase)


def lens_test(classifier: ClassifierLike, image: np.ndarray, lens_mask: np.ndarray, *, target: Any = None,
              batch_size: int = 16) -> LensTest:
    """Does the prediction rest on the lens? Paint the lens region as a clear pupil and predict again.

    A counterfactual that needs no map: the lens region (a mask at the image's size, for
    example :func:`components.lens.finder.find_lens`'s) is filled with the image's darkest colour,
    feathered at its edge, as a pupil with a clear lens looks. A cataract call that rests on the
    lens falls; one that rests on anything else (a corner stamp, the lids) does not.
    """
    mask = np.asarray(lens_mask, bool)
    if mask.shape != image.shape[:2]:
        raise FaithfulnessError(f"The lens mask has shape {mask.shape}; expected the image's {image.shape[:2]}.")
    if not mask.any():
        raise FaithfulnessError("The lens mask is empty; find the lens first.")
    _model_input(classifier, image)  # checks the image
    # A clear pupil reflects almost nothing: the photograph's darkest colour, but never brighter
    # than CLEAR_PUPIL_LEVEL. When an opacity fills the pupil the darkest remaining pixels are
    # iris or lashes (a brown of 30-50), and a pupil painted that colour still read as cataract
    # to the demo model on 7 of 38 synthetic eyes (render seeds 951000-951039, true pupil mask);
    # capped at 18, none did, and none of their normal twins is called cataract either.
    dark = np.minimum(np.percentile(image.reshape(-1, 3), 1, axis=0), CLEAR_PUPIL_LEVEL)
    radius = max(1.0, 0.02 * min(image.shape[:2]))
    # Grown a little and feathered, so no ring of the old margin is left for the model to read.
    grown = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)),
                       iterations=max(1, round(radius / 2)))
    alpha = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), radius / 2)[..., None]
    cleared = np.rint(image * (1 - alpha) + dark * alpha).astype(np.uint8)
    x, c = _model_input(classifier, image), _model_input(classifier, cleared)
    index = _target_index(classifier, x, target, batch_size)
    before, after = _probabilities(classifier, [x, c], index, batch_size)
    return LensTest(classifier.class_names[index], float(before), float(after))


# ============================================================ model-randomisation sanity check


def _blocks_to_randomise(model: nn.Module, blocks: int) -> list[tuple[str, nn.Module]]:
    """The head and the last ``blocks`` blocks (of ``features`` when there is one, else of the top-level children)."""
    named = dict(model.named_children())
    head_name = next((n for n in ("classifier", "fc", "head") if n in named), None)
    chosen: list[tuple[str, nn.Module]] = []
    features = named.get("features")
    if head_name is not None and isinstance(features, nn.Sequential):
        with_params = [(f"features.{i}", m) for i, m in enumerate(features) if any(True for _ in m.parameters())]
        chosen = with_params[-blocks:] if blocks > 0 else []
        chosen.append((head_name, named[head_name]))
        return chosen
    with_params = [(n, m) for n, m in named.items() if any(True for _ in m.parameters())]
    return with_params[-(blocks + 1):]


def randomised_copy(classifier: ClassifierLike, *, blocks: int = DEFAULT_RANDOM_BLOCKS, seed: int = 0,
                    calibration: Sequence[np.ndarray] | None = None) -> tuple[Any, tuple[str, ...]]:
    """A classifier-like copy whose head and last ``blocks`` blocks are re-initialised; the original is untouched.

    Convolution and linear layers get their default initialisation again (seeded); BatchNorm
    layers in those blocks get unit scale, zero shift and, when ``calibration`` images are
    given, running statistics measured on them, so activations keep a sensible scale.
    """
    model = copy.deepcopy(classifier.model)
    chosen = _blocks_to_randomise(model, blocks)
    if not chosen:
        raise FaithfulnessError("The model has no layers with weights to re-initialise.")
    norms: list[nn.modules.batchnorm._BatchNorm] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _, block in chosen:
            for module in block.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_parameters()
                    norms.append(module)
                    continue
                reset = getattr(module, "reset_parameters", None)
                if callable(reset) and any(True for _ in module.parameters(recurse=False)):
                    reset()
    model.eval()
    if calibration and norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration images
            m.train()
        with torch.no_grad():
            for start in range(0, len(calibration), 16):
                model(classifier.preprocess(list(calibration[start:start + 16])))
        for m in norms:
            m.momentum = 0.1
        model.eval()
    clone = _WithModel(classifier, model)
    return clone, tuple(name for name, _ in chosen)


class _WithModel:
    """The same classifier-like object (preprocessing, classes, layer) around another model."""

    def __init__(self, base: Any, model: nn.Module) -> None:
        self._base = base
        self.model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


Saliency = Callable[[Any, Sequence[np.ndarray], Sequence[int]], Sequence[np.ndarray]]


def _gradcam_saliency(method: str) -> Saliency:
    def maps(classifier: ClassifierLike, images: Sequence[np.ndarray], targets: Sequence[int]) -> list[np.ndarray]:
        return [e.cam for e in explain(classifier, list(images), method=method, target=list(targets))]
    return maps


def randomisation_check(classifier: ClassifierLike, images: Sequence[np.ndarray], *,
                        blocks: int = DEFAULT_RANDOM_BLOCKS, seed: int = 0, method: str = "gradcam",
                        saliency: Saliency | None = None,
                        threshold: float = RANDOMISATION_MAX_RHO) -> RandomisationResult:
    """Compare each image's map from the model with the map from a randomised copy.

    Both maps explain the class the original model predicts. ``saliency(classifier, images,
    targets) -> maps`` computes the maps (default: ``method`` through :func:`components.explanation.cam.explain`);
    any explanation method can be checked this way. Passes when the mean absolute Spearman
    correlation is below ``threshold``.
    """
    images = [np.asarray(i) for i in images]
    if not images:
        raise FaithfulnessError("The randomisation check needs at least one image.")
    maps_of = saliency or _gradcam_saliency(method)
    with torch.inference_mode():
        logits = torch.cat([classifier.model(classifier.preprocess(images[i:i + 16]))
                            for i in range(0, len(images), 16)])
    targets = [int(t) for t in logits.argmax(dim=1)]
    original = list(maps_of(classifier, images, targets))
    clone, names = randomised_copy(classifier, blocks=blocks, seed=seed, calibration=images)
    randomised = list(maps_of(clone, images, targets))
    rhos = tuple(spearman(a, b) for a, b in zip(original, randomised, strict=True))
    mean = float(np.mean(np.abs(rhos)))
    return RandomisationResult(rhos, mean, float(threshold), bool(mean < threshold), names)
