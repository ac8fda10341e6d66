"""Typicality: how unlike a model's training photographs a new photograph is, so a clinician is warned.

The score follows Lee et al. (2018, "A simple unified framework for detecting out-of-distribution
samples and adversarial attacks"): class-conditional Gaussians with one shared covariance fitted to
features of the reference (training) photographs, the squared Mahalanobis distance to the nearest
class mean, computed at several layers of the network (the early ones, which see colour, texture
and noise; see ``DEEP_LAYERS`` for why not the last). A further component applies the same
distance to input-level cues (aspect ratio, resolution, colour, clipping, fine-scale texture),
which catch photographs whose look no training photograph had even when the deep features
happen to fall near a class mean.

For a wide layer the covariance is a probabilistic PCA (Tipping and Bishop, 1999): ``k`` principal
directions with their own variances and one isotropic variance for the rest, so the statistics
stay small and the residual off the principal subspace, where unfamiliar inputs often land
(Wang et al., 2022, ViM), still counts.

Each component's distance is divided by its 95th percentile on held-out in-distribution photographs
and square-rooted; the ``ood_score`` is the largest of these (1.0: as far as the 95th percentile of
held-out photographs on the component where it is furthest). ``unlike_training`` is ``ood_score``
above a threshold taken from the held-out photographs' own scores so that at most ``rate`` of them
(by default half of 5%, a margin for a fresh set of photographs) are flagged.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import cv2
import numpy as np
import torch

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.screening.vocabulary import TYPICALITY_NOT_AVAILABLE, UNLIKE_TRAINING_WARNING

__all__ = [
    "DEEP_LAYERS",
    "LAYERS",
    "MIN_PHOTOGRAPHS",
    "NOT_AVAILABLE",
    "TYPICALITY_FORMAT",
    "Gaussian",
    "Typicality",
    "TypicalityError",
    "TypicalityStats",
    "assess",
    "conformal_threshold",
    "explain_options",
    "explained_features",
    "extract_features",
    "fit_gaussian",
    "fit_typicality",
    "input_cues",
    "stats_from_payload",
    "stats_to_payload",
    "typicality_stats",
]

TYPICALITY_FORMAT = "cataract-cam-typicality/1"
NOT_AVAILABLE = TYPICALITY_NOT_AVAILABLE
# features.1-3 hold colour and texture at high resolution. Deeper layers were tried on the demo
# model (400 reference, 150 held-out and 150 test synthetic eyes, generator 1.1): from features.4
# on, 5-8% of the test eyes landed beyond the held-out 95th percentile and a few at 15-30 times
# it, so they would flag ordinary in-distribution eyes, and they separated fundus photographs
# worse (AUROC 0.97-0.98 against 0.99-1.00 for features.1-3).
DEEP_LAYERS: tuple[int, ...] = (1, 2, 3)
LAYERS: tuple[str, ...] = tuple(f"features.{i}" for i in DEEP_LAYERS)  # the modules' names
CUES = "input"
# Principal directions kept for a wide layer (the rest share one variance).
SUBSPACE = 16
DEFAULT_RATE = 0.05
MIN_PHOTOGRAPHS = 8  # fewer reference or held-out photographs than this give no statistics
# Smallest difference that counts in each input cue, in the cue's own units: a floor under its
# spread, so a cue that never varied among the reference photographs (every synthetic render has
# the same aspect ratio) weighs a real difference heavily but not a rounding error infinitely.
CUE_NAMES: tuple[str, ...] = (
    "log_aspect", "log_small_side", "mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
    "clipped_white", "clipped_black", "log_detail_1px", "log_detail_2px", "log_noise", "saturation_mean",
    "saturation_std",
)
CUE_RESOLUTION: tuple[float, ...] = (
    0.02, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.002, 0.002, 0.02, 0.02, 0.02, 0.01, 0.01,
)
# Eigenvalue floor, in units of a standardised feature's variance.
VARIANCE_FLOOR = 0.01


class TypicalityError(CataractCamError, ValueError):
    """Statistics cannot be fitted or read; the message says what was expected."""


@dataclass(frozen=True)
class Gaussian:
    """Class means and one shared covariance (principal subspace plus isotropic rest) of standardised features."""

    centre: np.ndarray  # (d,) subtracted before scaling
    scale: np.ndarray  # (d,) divided after centring
    class_means: np.ndarray  # (C, d) in standardised units
    basis: np.ndarray  # (d, k) orthonormal principal directions
    variances: np.ndarray  # (k,) variance along each direction
    residual_variance: float  # variance of every direction outside the basis (unused when k == d)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to the nearest class mean.

        Raises:
            TypeError: ``features`` is not a numpy array.
            ValueError: it is not (n, d) with this Gaussian's d.
        """
        if not isinstance(features, np.ndarray):
            raise TypeError(f"features must be a numpy array, got {type(features).__name__}.")
        d = self.centre.shape[0]
        if features.ndim != 2 or features.shape[1] != d:
            raise ValueError(f"Expected features of shape (n, {d}), got {features.shape}.")
        z = (features.astype(np.float64) - self.centre) / self.scale
        best = np.full(z.shape[0], np.inf)
        full = self.basis.shape[1] == d
        for mean in self.class_means:
            u = z - mean
            a = u @ self.basis
            dist = (a * a / self.variances).sum(1)
            if not full:
                rest = np.maximum((u * u).sum(1) - (a * a).sum(1), 0.0)
                dist = dist + rest / self.residual_variance
            best = np.minimum(best, dist)
        return best


def fit_gaussian(features: np.ndarray, labels: np.ndarray | None = None, *, subspace: int = SUBSPACE,
                 resolution: np.ndarray | None = None, variance_floor: float = VARIANCE_FLOOR) -> Gaussian:
    """Fit class means and a shared covariance to (n, d) features (Lee et al. 2018's tied Gaussian).

    Features are standardised (the spread floored at ``resolution``, or at a thousandth of the
    median spread), the covariance of the class-centred features is eigen-decomposed, the
    leading ``subspace`` directions kept with their variances floored at ``variance_floor`` and the
    remaining directions given their mean variance.

    Raises:
        TypeError: ``features`` or ``labels`` is not a numpy array.
        ValueError: fewer than two rows, not 2-D, labels of another length, or a class with no row.
    """
    if not isinstance(features, np.ndarray) or (labels is not None and not isinstance(labels, np.ndarray)):
        raise TypeError("features and labels must be numpy arrays.")
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"Expected at least two rows of features (n, d), got shape {features.shape}.")
    x = features.astype(np.float64)
    n, d = x.shape
    y = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    if y.shape != (n,):
        raise ValueError(f"Expected {n} labels, got shape {y.shape}.")
    centre = x.mean(0)
    spread = x.std(0)
    floor = np.asarray(resolution, np.float64) if resolution is not None else \
        np.full(d, max(float(np.median(spread)) * 1e-3, 1e-12))
    scale = np.maximum(spread, floor)
    z = (x - centre) / scale
    classes = np.unique(y)
    means = np.stack([z[y == c].mean(0) for c in classes])
    centred = z - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / n
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.maximum(eigval[order], 0.0), eigvec[:, order]
    k = min(int(subspace), d)
    rest = float(eigval[k:].mean()) if k < d else 0.0
    return Gaussian(centre=centre, scale=scale, class_means=means, basis=np.ascontiguousarray(eigvec[:, :k]),
                    variances=np.maximum(eigval[:k], variance_floor), residual_variance=max(rest, variance_floor))


# ------------------------------------------------------------------------------------------
# Features.
# ------------------------------------------------------------------------------------------


def input_cues(pixels: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """The input-level cues of one photograph: a vector in the order of ``CUE_NAMES``.

    ``pixels`` is the model's input as float RGB in [0, 1], (S, S, 3); ``original_size`` the
    photograph's (height, width) before it was resized to S.

    Raises:
        TypeError: ``pixels`` is not a numpy array.
        ValueError: it is not (S, S, 3), or the size is not two positive integers.
    """
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, got {type(pixels).__name__}.")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"Expected pixels of shape (S, S, 3), got {pixels.shape}.")
    return np.concatenate([_size_cues(original_size, pixels.shape[0]), _pixel_cues(pixels)])


def _size_cues(original_size: tuple[int, int], input_size: int) -> np.ndarray:
    """The cues from the photograph's own size: ``log_aspect`` and ``log_small_side``."""
    h, w = original_size
    if h < 1 or w < 1:
        raise ValueError(f"The original size must be positive, got {original_size}.")
    return np.array([
        math.log(w / h),
        # Only a photograph smaller than the input is upsampled (and blurred) by the resize.
        min(0.0, math.log(min(h, w) / input_size)),
    ], dtype=np.float64)


def _pixel_cues(pixels: np.ndarray) -> np.ndarray:
    """The cues from the model's input pixels (S, S, 3) in [0, 1]: the rest of ``CUE_NAMES``."""
    return _plane_cues(np.ascontiguousarray(np.moveaxis(pixels.astype(np.float32, copy=False), 2, 0)))


def _plane_cues(planes: np.ndarray) -> np.ndarray:
    """:func:`_pixel_cues` of the input laid out as colour planes (3, S, S), float32, as the model takes it.

    The plain formulas (``x.mean(2)``, ``x.max(2)``, the columns of ``x.reshape(-1, 3)``) taken a
    plane at a time, which is several times faster than numpy's reductions over an axis of three;
    the means and spreads are summed in float64 (the statistics were fitted with float32 sums one
    value after another: the two differ only in the last float32 digits), and the median is
    :func:`_median`, numpy's value found by partitioning only the values near it. This runs in every
    ``explain`` that keeps the cues.
    """
    red, green, blue = planes
    grey = (red + green + blue) / np.float32(3)
    brightest = np.maximum(np.maximum(red, green), blue)
    darkest = np.minimum(np.minimum(red, green), blue)
    means, stds = zip(*(_mean_std(plane) for plane in planes), strict=True)
    saturation = (brightest - darkest) / (brightest + np.float32(1e-3))
    detail = [float(np.log(_mean_std(grey - cv2.GaussianBlur(grey, (0, 0), s))[1] + 1e-4)) for s in (1.0, 2.0)]
    noise = float(np.log(_median(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).ravel()) + 1e-4))
    sat_mean, sat_std = _mean_std(saturation)
    return np.array([
        *means, *stds,
        np.count_nonzero(brightest > 0.97) / brightest.size, np.count_nonzero(darkest < 0.03) / darkest.size,
        *detail, noise, sat_mean, sat_std,
    ], dtype=np.float64)


def _mean_std(plane: np.ndarray) -> tuple[float, float]:
    """The mean and the (population) standard deviation of a 2-D float32 array, summed in float64."""
    mean, std = cv2.meanStdDev(plane)
    return float(mean[0, 0]), float(std[0, 0])


def _median(values: np.ndarray) -> float:
    """``np.median`` of a flat array, found by partitioning only the values near the median.

    A strided sample brackets the median; the values below the bracket are counted, those inside
    it partitioned. When the bracket misses (it cannot, but for odd data), the full median is taken.
    """
    n = values.size
    if n < 4096:
        return float(np.median(values))
    sample = values[::16]
    m = sample.size
    spread = int(2 * math.sqrt(m)) + 1  # four standard deviations of a sampled rank
    lo_rank, hi_rank = max(0, m // 2 - spread), min(m - 1, m // 2 + spread)
    bounds = np.partition(sample, [lo_rank, hi_rank])
    lo, hi = bounds[lo_rank], bounds[hi_rank]
    below = int(np.count_nonzero(values < lo))
    inside = values[(values >= lo) & (values <= hi)]
    ranks = [n // 2 - 1, n // 2] if n % 2 == 0 else [n // 2]
    if below > ranks[0] or below + inside.size <= ranks[-1]:
        return float(np.median(values))
    wanted = [r - below for r in ranks]
    return float(np.mean(np.partition(inside, wanted)[wanted]))


def _level_cues(image: np.ndarray) -> np.ndarray:
    """:func:`_pixel_cues` of ``image / 255`` for the model's input as whole levels, RGB uint8 (S, S, 3).

    The same formulas, worked in integers where they can be: the grey level times 765 is the
    whole sum of the three planes, its Laplacian a whole number (so the median is read from
    counts), the clipping tests are thresholds on levels (> 0.97 is from 248 up, < 0.03 up to 7).
    Means and spreads come from sums and sums of squares accumulated in float64 (``cv2.sumElems``,
    ``cv2.norm``: one pass each and no difference image), several times faster than
    ``meanStdDev``. Equal to :func:`_plane_cues` of the levels within float32 rounding, and
    cheaper: it runs in every ``explain`` that keeps the cues.
    """
    n = image.shape[0] * image.shape[1]
    red, green, blue = cv2.split(image)
    sums = cv2.sumElems(image)[:3]
    spreads = [_spread(s, cv2.norm(plane, cv2.NORM_L2SQR), n) for s, plane in zip(sums, (red, green, blue),
                                                                                  strict=True)]
    brightest = cv2.max(cv2.max(red, green), blue)
    darkest = cv2.min(cv2.min(red, green), blue)
    white = cv2.countNonZero(cv2.threshold(brightest, 247, 1, cv2.THRESH_BINARY)[1]) / n  # from 248 up
    black = cv2.countNonZero(cv2.threshold(darkest, 7, 1, cv2.THRESH_BINARY_INV)[1]) / n  # up to 7
    grey = cv2.add(cv2.add(red, green, dtype=cv2.CV_32F), blue, dtype=cv2.CV_32F)  # 765 x grey, exact
    grey_sum = cv2.sumElems(grey)[0]
    details = []
    for sigma in (1.0, 2.0):
        blurred = cv2.GaussianBlur(grey, (0, 0), sigma)
        details.append(_spread(grey_sum - cv2.sumElems(blurred)[0], cv2.norm(grey, blurred, cv2.NORM_L2SQR), n))
    # Whole numbers in float32 (exact below 2**24), at most 4 x 765 in size: as uint16 for the histogram.
    size = np.abs(cv2.Laplacian(grey, cv2.CV_32F)).astype(np.uint16)
    counts = np.cumsum(cv2.calcHist([size], [0], None, [4 * 765 + 1], [0, 4 * 765 + 1]).ravel())
    ranks = np.array([n // 2 - 1, n // 2] if n % 2 == 0 else [n // 2])
    median = np.searchsorted(counts, ranks + 1).mean()  # the first value whose count passes each rank
    lit = brightest.astype(np.float32)
    saturation = cv2.divide(cv2.subtract(lit, darkest, dtype=cv2.CV_32F), lit + np.float32(0.255))
    sat_sum = cv2.sumElems(saturation)[0]
    return np.array([
        *(s / n / 255 for s in sums), *(v / 255 for v in spreads), white, black,
        *np.log(np.array([*details, median]) / 765 + 1e-4),
        sat_sum / n, _spread(sat_sum, cv2.norm(saturation, cv2.NORM_L2SQR), n),
    ], dtype=np.float64)


def _spread(total: float, squares: float, n: int) -> float:
    """The population standard deviation of n values from their sum and their sum of squares."""
    mean = total / n
    return math.sqrt(max(squares / n - mean * mean, 0.0))


def _check_classifier(classifier: ClassifierLike) -> None:
    if not all(hasattr(classifier, a) for a in ("model", "preprocess", "mean", "std", "input_size")):
        raise TypeError(f"Expected a classifier (models.Classifier or alike), got {type(classifier).__name__}.")
    if not hasattr(classifier.model, "features"):
        raise ValueError("Typicality needs an EfficientNet-style model with .features.")


def extract_features(classifier: ClassifierLike, images: Sequence[np.ndarray], *, batch_size: int = 16
                     ) -> dict[str, np.ndarray]:
    """Pooled activations at ``DEEP_LAYERS`` (``features.<i>``) and the input cues, one row per image.

    Raises:
        TypeError: not a classifier, or an image is not a numpy array.
        ValueError: the model has no ``features``, or an image is not RGB uint8.
    """
    _check_classifier(classifier)
    images = list(images)
    if not all(isinstance(im, np.ndarray) for im in images):
        raise TypeError("Every image must be an RGB uint8 numpy array.")
    rows: dict[str, list[np.ndarray]] = {n: [] for n in [*LAYERS, CUES]}
    summary = _cue_summary(classifier)
    last = max(DEEP_LAYERS)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            x = classifier.preprocess(chunk)
            rows[CUES].extend(np.concatenate([_size_cues(im.shape[:2], classifier.input_size), cues])
                              for cues, im in zip(summary.many(x), chunk, strict=True))
            blocks = cast(Sequence[torch.nn.Module], classifier.model.features)
            for index, block in enumerate(blocks):
                x = block(x)
                if index in DEEP_LAYERS:
                    rows[f"features.{index}"].append(x.float().mean((2, 3)).numpy().astype(np.float64))
                if index == last:
                    break
    return {n: (np.concatenate(v) if n != CUES else np.stack(v)) if v else np.empty((0, 0)) for n, v in rows.items()}


class _CueSummary:
    """The pixel cues of preprocessed inputs, as :func:`extract_features` computes them.

    Called with one input (3, S, S), it gives that image's cues; ``many`` takes a batch
    (N, 3, S, S) and gives one row per image.
    The classifier's input is a resized RGB uint8 image normalised, so un-normalising and
    rounding gives back its levels exactly (the float32 error is under 1e-4 of a level).
    """

    def __init__(self, classifier: ClassifierLike) -> None:
        # x * std + mean, times 255, channel by channel, as one affine map of each pixel's colour.
        self.affine = np.zeros((3, 4))
        for c in range(3):
            self.affine[c, c] = 255 * float(classifier.std[c])
            self.affine[c, 3] = 255 * float(classifier.mean[c])

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        levels = cv2.transform(np.ascontiguousarray(x.permute(1, 2, 0).numpy()), self.affine)
        # Rounded to the nearest level and saturated at 255; a level 0 comes back as +-1e-4, whose
        # absolute value rounds to 0 as well.
        return _level_cues(cv2.convertScaleAbs(levels))

    def many(self, x: torch.Tensor) -> np.ndarray:
        """One row per image of the batch (N, 3, S, S), each as :meth:`__call__` gives it."""
        return np.stack([self(xi) for xi in x]) if x.shape[0] else np.empty((0, len(CUE_NAMES) - 2))


def _cue_summary(classifier: ClassifierLike) -> _CueSummary:
    """The pixel cues of one preprocessed input (3, S, S), or of a batch with ``.many``: :class:`_CueSummary`."""
    return _CueSummary(classifier)


def explain_options(classifier: ClassifierLike) -> dict[str, Any]:
    """Keywords for ``components.explanation.cam.explain`` so that its explanations carry what typicality scores.

    With them, ``explain`` keeps the pooled activations at ``LAYERS`` and the input's pixel cues
    from its own forward pass, and :func:`assess` given those explanations runs no model. Empty
    (nothing kept) when the classifier has no statistics, is not one typicality can use, or its
    statistics cannot be read: :func:`assess` says "not available" or raises on its own then.
    """
    try:
        stats = typicality_stats(classifier)
    except (TypeError, ValueError):  # TypicalityError is a ValueError
        return {}
    if stats is None:
        return {}
    return {"pooled": LAYERS, "input_summary": _cue_summary(classifier)}


def _reused(classifier: ClassifierLike, image: np.ndarray, explanation: Any) -> dict[str, np.ndarray] | None:
    """One image's features from its explanation (made with :func:`explain_options`), or None when it lacks them."""
    pooled = getattr(explanation, "pooled", None)
    summary = getattr(explanation, "input_summary", None)
    if not isinstance(pooled, Mapping) or not all(isinstance(pooled.get(n), np.ndarray) for n in LAYERS):
        return None
    if not isinstance(summary, np.ndarray) or summary.shape != (len(CUE_NAMES) - 2,):
        return None
    cues = np.concatenate([_size_cues(image.shape[:2], classifier.input_size), summary.astype(np.float64)])
    return {**{n: np.asarray(pooled[n], np.float64) for n in LAYERS}, CUES: cues}


def explained_features(classifier: ClassifierLike, images: Sequence[np.ndarray], explanations: Sequence[Any], *,
                       batch_size: int = 16) -> dict[str, np.ndarray]:
    """What :func:`extract_features` gives, taken from the explanations where they carry it.

    ``explanations[i]`` is ``components.explanation.cam.explain``'s result for ``images[i]`` with this
    classifier and :func:`explain_options`; for an image whose explanation lacks the features
    (explained without the options), the model runs as in :func:`extract_features`.

    Raises:
        TypeError: not a classifier, or an image is not a numpy array.
        ValueError: the model has no ``features``, or not one explanation per image.
    """
    _check_classifier(classifier)
    images, explanations = list(images), list(explanations)
    if not all(isinstance(im, np.ndarray) for im in images):
        raise TypeError("Every image must be an RGB uint8 numpy array.")
    if len(explanations) != len(images):
        raise ValueError(f"Expected one explanation per image, got {len(explanations)} for {len(images)}.")
    found = [_reused(classifier, im, ex) for im, ex in zip(images, explanations, strict=True)]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        extracted = extract_features(classifier, [images[i] for i in missing], batch_size=batch_size)
        for row, i in enumerate(missing):
            found[i] = {n: v[row] for n, v in extracted.items()}
    rows = [f for f in found if f is not None]
    if not rows:
        return {n: np.empty((0, 0)) for n in [*LAYERS, CUES]}
    return {n: np.stack([f[n] for f in rows]) for n in [*LAYERS, CUES]}


# ------------------------------------------------------------------------------------------
# Statistics: fitting, scoring, storing.
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypicalityStats:
    """Everything needed to score a photograph: one Gaussian per component, their norms, the threshold."""

    components: dict[str, Gaussian]
    norms: dict[str, float]  # each component's 95th-percentile held-out distance
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ``ood_score`` of each row: the largest normalised distance over the components.

        Raises:
            TypeError: ``features`` is not a mapping.
            ValueError: a component's features are missing.
        """
        if not isinstance(features, Mapping):
            raise TypeError(f"features must be a mapping of component name to array, got {type(features).__name__}.")
        missing = [n for n in self.components if n not in features]
        if missing:
            raise ValueError(f"Features for {', '.join(missing)} are missing.")
        parts = [np.sqrt(g.distance(features[n]) / self.norms[n]) for n, g in self.components.items()]
        return np.max(np.stack(parts), axis=0)

    def component_scores(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each component's normalised distance, to say where a photograph is unusual."""
        return {n: np.sqrt(g.distance(features[n]) / self.norms[n]) for n, g in self.components.items()}


def conformal_threshold(scores: np.ndarray, rate: float) -> float:
    """The smallest held-out score such that at most ``rate`` of the held-out scores exceed it.

    It is the ceil((n + 1)(1 - rate))-th smallest score (the split-conformal quantile), so a fresh
    in-distribution photograph exceeds it with probability at most ``rate``.

    Raises:
        ValueError: ``rate`` outside (0, 1) or no scores.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"The rate must lie strictly between 0 and 1, got {rate}.")
    ordered = np.sort(np.asarray(scores, np.float64))
    if ordered.size == 0:
        raise ValueError("Setting a threshold needs at least one held-out score.")
    rank = math.ceil((ordered.size + 1) * (1.0 - rate))
    return float(ordered[min(rank, ordered.size) - 1])


def fit_typicality(classifier: ClassifierLike, reference: Sequence[np.ndarray], heldout: Sequence[np.ndarray], *,
                   labels: Sequence[int] | np.ndarray | None = None, rate: float = DEFAULT_RATE,
                   margin: float = 0.5, batch_size: int = 16) -> TypicalityStats:
    """Fit the statistics on reference photographs and set the threshold on held-out ones.

    ``labels``: the reference photographs' class indices (None: the model's own predictions,
    as Lee et al. do at test time). The threshold flags at most ``rate * margin`` of the held-out
    photographs, so that a fresh set stays under ``rate`` despite the sampling noise of a
    percentile taken from a few hundred photographs.

    Raises:
        TypeError: not a classifier, or images that are not arrays.
        ValueError: fewer than 8 reference or 8 held-out photographs, labels of another length,
            ``rate`` or ``margin`` outside (0, 1].
    """
    _check_classifier(classifier)
    if len(reference) < MIN_PHOTOGRAPHS or len(heldout) < MIN_PHOTOGRAPHS:
        raise ValueError(f"Typicality needs at least {MIN_PHOTOGRAPHS} reference and held-out photographs each, "
                         f"got {len(reference)} and {len(heldout)}.")
    if not 0.0 < margin <= 1.0:
        raise ValueError(f"The margin must lie in (0, 1], got {margin}.")
    ref = extract_features(classifier, reference, batch_size=batch_size)
    held = extract_features(classifier, heldout, batch_size=batch_size)
    if labels is None:
        y = classifier.predict_proba(list(reference)).argmax(1)
    else:
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (len(reference),):
            raise ValueError(f"Expected {len(reference)} labels, got {y.shape[0] if y.ndim else 0}.")
    components: dict[str, Gaussian] = {}
    for name, rows in ref.items():
        if name == CUES:
            components[name] = fit_gaussian(rows, None, subspace=rows.shape[1],
                                            resolution=np.array(CUE_RESOLUTION))
        else:
            components[name] = fit_gaussian(rows, y, subspace=SUBSPACE)
    norms = {n: max(float(np.quantile(g.distance(held[n]), 0.95)), 1e-12) for n, g in components.items()}
    stats = TypicalityStats(components=components, norms=norms, threshold=0.0)
    held_scores = stats.score(held)
    threshold = conformal_threshold(held_scores, rate * margin)
    info = {"reference_count": len(reference), "heldout_count": len(heldout), "rate": rate, "margin": margin,
            "heldout_flagged": float((held_scores > threshold).mean()), "input_size": classifier.input_size,
            "labels": "given" if labels is not None else "predicted"}
    return TypicalityStats(components=components, norms=norms, threshold=threshold, info=info)


def _pack(array: np.ndarray, tensors: bool) -> Any:
    data = np.ascontiguousarray(array, dtype=np.float32)
    if tensors:
        return torch.from_numpy(data.copy())
    return {"dtype": "float32", "shape": list(data.shape),
            "base64": base64.b64encode(data.astype("<f4").tobytes()).decode("ascii")}


def _unpack(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    if isinstance(value, Mapping) and value.get("dtype") == "float32" and isinstance(value.get("base64"), str):
        shape = tuple(int(s) for s in value.get("shape", []))
        raw = np.frombuffer(base64.b64decode(value["base64"], validate=True), dtype="<f4")
        if raw.size != math.prod(shape):
            raise TypicalityError("A stored typicality array does not match its shape.")
        return raw.reshape(shape).astype(np.float64)
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    raise TypicalityError(f"A stored typicality array is a {type(value).__name__}; expected a tensor or a list.")


_ARRAYS = ("centre", "scale", "class_means", "basis", "variances")


def stats_to_payload(stats: TypicalityStats, *, tensors: bool) -> dict[str, Any]:
    """Plain data for a checkpoint (``tensors=True``: torch tensors) or a JSON file (base64 float32).

    Raises:
        TypeError: ``stats`` is not TypicalityStats.
    """
    if not isinstance(stats, TypicalityStats):
        raise TypeError(f"Expected TypicalityStats, got {type(stats).__name__}.")
    return {
        "format": TYPICALITY_FORMAT,
        "threshold": float(stats.threshold),
        "components": {
            name: {**{k: _pack(getattr(g, k), tensors) for k in _ARRAYS},
                   "residual_variance": float(g.residual_variance), "norm": float(stats.norms[name])}
            for name, g in stats.components.items()
        },
        "info": dict(stats.info),
    }


def stats_from_payload(payload: Mapping[str, Any]) -> TypicalityStats:
    """Read what :func:`stats_to_payload` wrote.

    Raises:
        TypeError: ``payload`` is not a mapping.
        TypicalityError: another format, or entries that do not fit together.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"Expected a mapping, got {type(payload).__name__}.")
    if payload.get("format") != TYPICALITY_FORMAT:
        raise TypicalityError(f"The typicality statistics are not in the {TYPICALITY_FORMAT} format.")
    try:
        components, norms = {}, {}
        for name, entry in dict(payload["components"]).items():
            arrays = {k: _unpack(entry[k]) for k in _ARRAYS}
            g = Gaussian(**arrays, residual_variance=float(entry["residual_variance"]))
            d = g.centre.shape[0]
            if g.scale.shape != (d,) or g.class_means.shape[1] != d or g.basis.shape[0] != d \
                    or g.variances.shape != (g.basis.shape[1],):
                raise TypicalityError(f"The typicality statistics of {name} do not fit together.")
            components[str(name)] = g
            norms[str(name)] = float(entry["norm"])
        return TypicalityStats(components=components, norms=norms, threshold=float(payload["threshold"]),
                               info=dict(payload.get("info") or {}))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, TypicalityError):
            raise
        raise TypicalityError("The typicality statistics are incomplete or malformed.") from None


# ------------------------------------------------------------------------------------------
# What each prediction gets.
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Typicality:
    """One photograph's typicality: a score and a flag, or "not available" when the model has no statistics."""

    available: bool
    ood_score: float | None = None
    unlike_training: bool | None = None
    threshold: float | None = None
    unusual_in: str | None = None  # the component where it is furthest from the training photographs

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the score, the flag and the threshold, or ``"not available"`` for each."""
        if not self.available or self.ood_score is None:
            return {"ood_score": NOT_AVAILABLE, "unlike_training": NOT_AVAILABLE, "threshold": NOT_AVAILABLE}
        return {"ood_score": round(self.ood_score, 6), "unlike_training": bool(self.unlike_training),
                "threshold": None if self.threshold is None else round(self.threshold, 6),
                "unusual_in": self.unusual_in}

    def report_fields(self) -> dict[str, Any]:
        """What the report prints: the sentence, and whether it is a warning."""
        return {"text": self.text, "unlike_training": bool(self.unlike_training)}

    @property
    def text(self) -> str:
        """What a screen or a report says about it."""
        if not self.available or self.ood_score is None:
            return f"Typicality: {NOT_AVAILABLE} (this model carries no statistics of its training photographs)."
        if self.unlike_training:
            return f"{UNLIKE_TRAINING_WARNING} (Typicality score {self.ood_score:.3g}, threshold {self.threshold:.3g}.)"
        return f"Like the model's training photographs (score {self.ood_score:.3g}, threshold {self.threshold:.3g})."


_CACHE: dict[int, tuple[Any, TypicalityStats]] = {}


def typicality_stats(classifier: ClassifierLike) -> TypicalityStats | None:
    """The classifier's statistics (from its checkpoint or its sidecar JSON), or None when it has none.

    Raises:
        TypeError: not a classifier.
        TypicalityError: statistics that are stored but malformed.
    """
    _check_classifier(classifier)
    payload = classifier.typicality
    if not payload:
        return None
    cached = _CACHE.get(id(payload))
    if cached is not None and cached[0] is payload:
        return cached[1]
    stats = stats_from_payload(payload)
    _CACHE[id(payload)] = (payload, stats)
    return stats


def assess(classifier: ClassifierLike, images: Sequence[np.ndarray], *, batch_size: int = 16,
           explanations: Sequence[Any] | None = None) -> list[Typicality]:
    """Typicality of each photograph under the classifier's statistics; "not available" without them.

    ``explanations``: ``components.explanation.cam.explain``'s results for the same images, made with
    :func:`explain_options`, so the features come from that forward pass and the model does
    not run again (an explanation without them falls back to running it). The result is the same.

    Raises:
        TypeError: not a classifier, or an image that is not an array.
        ValueError: an image that is not RGB uint8, or not one explanation per image.
        TypicalityError: stored statistics that are malformed.
    """
    stats = typicality_stats(classifier)
    images = list(images)
    if stats is None:
        _check_classifier(classifier)
        return [Typicality(available=False) for _ in images]
    if not images:
        return []
    if explanations is None:
        features = extract_features(classifier, images, batch_size=batch_size)
    else:
        features = explained_features(classifier, images, explanations, batch_size=batch_size)
    parts = stats.component_scores(features)
    names = list(parts)
    stacked = np.stack([parts[n] for n in names])
    scores = stacked.max(0)
    return [Typicality(available=True, ood_score=float(s), unlike_training=bool(s > stats.threshold),
                       threshold=stats.threshold, unusual_in=names[int(stacked[:, i].argmax())])
            for i, s in enumerate(scores)]
