"""Finding the lens in a photograph: the pupil of an external or slit-lamp photograph, or a fundus camera's field.

:func:`find_lens` locates the region the attention should sit on. For external and slit-lamp
photographs that is the pupil, through which the lens is seen: a circle search with the
integro-differential operator on the limbus and the pupil margin, then a least-squares circle fit
to the pupil's edge points. For fundus photographs it is the circular field of view.
:func:`detect_modality` tells the two kinds apart. The attention check
(:mod:`components.lens.attention`) judges a map against the :class:`LensRegion` found here.

Thresholds (the constants below) were tuned on synthetic eyes with exact masks (tuning seeds
only, never the seeds ``benchmarks/bench_audit.py`` reports on); each constant says what it
separates and what was measured.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from components.base import config
from components.base.errors import CataractCamError
from components.screening.vocabulary import ATTENTION_MODALITIES, attention_modality

__all__ = [
    "ANALYSIS_SIDE",
    "CIRCLE",
    "FINDERS",
    "LEARNED",
    "MIN_FUNDUS_AREA",
    "MIN_FUNDUS_ROUNDNESS",
    "MIN_LENS_CONFIDENCE",
    "AttentionError",
    "LensRegion",
    "check_image",
    "detect_modality",
    "find_lens",
]

# The two pupil finders for external photographs (find_lens's ``finder``).
LEARNED = "learned"
CIRCLE = "circle"
FINDERS = (LEARNED, CIRCLE)
# The environment can pick the finder for a whole process (a benchmark comparing the two, a site
# that prefers one); find_lens's own ``finder`` argument wins over it.

# The fundus field is found, and a map judged, on a grid at most this long (px).
ANALYSIS_SIDE = 512

# ---- Finding the lens -----------------------------------------------------------------------
# Iris radius as a fraction of the image's short side: synthetic eyes span 0.25-0.41, close-up
# and slit-lamp photographs 0.15-0.45; the search covers both.
IRIS_RADIUS_RANGE = (0.13, 0.48)
# Pupil radius as a fraction of the iris radius (0.35-0.6 in the synthetic eyes, about 0.2-0.7
# from bright light to dilated). Stopping short of 0.8 keeps the dark limbal ring just inside
# the limbus from passing for a pupil margin.
PUPIL_RATIO_RANGE = (0.2, 0.72)
# A pupil is reported only above this confidence (how it is computed: see AGREE_RANGE below).
MIN_LENS_CONFIDENCE = 0.5
# How sure a pupil is: the product of three terms, each 0 to 1. Agreement: the share of 90 rays
# whose edge on the circle is at least AGREE_FRACTION of their strongest edge, mapped from
# AGREE_RANGE to 0..1. Margin contrast (median difference across the margin over the quartile
# spreads) divided by FULL_CONTRAST, to the power CONTRAST_EXPONENT (a faint margin that nearly
# every ray agrees on, a grey-brown nucleus in a brown iris, still counts). Limbus contrast
# (the white of the eye against the iris, on both sides) divided by FULL_LIMBUS, to the power
# LIMBUS_EXPONENT: it is what tells an eye from a round blob, and a pale iris has a weak one.
# Chosen on 400 tuning images (render seeds 1000-1199, data set seed 5) and 54 images with no
# eye (skin and lash crops, smooth noise, fundus photographs): the pupil was found in 98.0%
# with 3 wrong circles (IoU < 0.5); no eye-less image passed, the highest reached 0.47. Both
# terms taken linearly found 96.5% (highest eye-less 0.36).
AGREE_FRACTION = 0.5
AGREE_RANGE = (0.7, 0.9)
FULL_CONTRAST = 1.0
CONTRAST_EXPONENT = 0.5
FULL_LIMBUS = 1.0
LIMBUS_EXPONENT = 0.5
TEXTURE_GAIN = 3.0  # local standard deviation to grey levels, so its margins score like brightness ones
# A fundus field must fill this share of the image and be this round (area over the area of
# its enclosing circle, or over its fitted ellipse when the camera stretched it).
MIN_FUNDUS_AREA = 0.15
MIN_FUNDUS_ROUNDNESS = 0.80


class AttentionError(CataractCamError, ValueError):
    """An image, map, mask or modality given to the lens finder or the attention check was malformed."""


@dataclass(frozen=True)
class LensRegion:
    """Where the lens (external) or the fundus field (fundus) is, and how sure the finder is."""

    # bool (H, W) at the image's own size; all False when not found. Not compared: a region is its shape's numbers.
    mask: np.ndarray = field(compare=False, repr=False)
    confidence: float  # 0..1
    found: bool  # confidence reached MIN_LENS_CONFIDENCE (and a region exists)
    modality: str
    center: tuple[float, float] | None = None  # (x, y) in image pixels
    radius: float | None = None  # pupil radius (external) or field radius (fundus), px
    iris_center: tuple[float, float] | None = None
    iris_radius: float | None = None
    reason: str = ""  # why it was not found, one sentence; empty when found
    # The learned finder's ellipses (full axis lengths in px, angle in degrees as cv2.ellipse takes
    # them); None for the circle search and the fundus field, whose regions are circles.
    axes: tuple[float, float] | None = None
    angle: float = 0.0
    iris_axes: tuple[float, float] | None = None
    iris_angle: float = 0.0
    finder: str = ""  # "learned" or "circle" (external photographs), "field" (fundus)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready description (no mask)."""
        def pt(p: tuple[float, float] | None) -> list[float] | None:
            return None if p is None else [round(float(p[0]), 2), round(float(p[1]), 2)]

        return {
            "found": self.found,
            "confidence": round(float(self.confidence), 4),
            "modality": self.modality,
            "center": pt(self.center),
            "radius": None if self.radius is None else round(float(self.radius), 2),
            "iris_center": pt(self.iris_center),
            "iris_radius": None if self.iris_radius is None else round(float(self.iris_radius), 2),
            "axes": pt(self.axes),
            "angle": round(float(self.angle), 2),
            "iris_axes": pt(self.iris_axes),
            "iris_angle": round(float(self.iris_angle), 2),
            "finder": self.finder,
            "reason": self.reason,
            "size": [int(self.mask.shape[1]), int(self.mask.shape[0])],  # (w, h) of the picture it was found on
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LensRegion:
        """A region as :meth:`as_dict` wrote it (read back from the records): its mask is not kept, so it is
        a read-only all-False array of the recorded size, costing no memory.

        Raises:
            TypeError: ``data`` is not a mapping.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a region must be a mapping, got {type(data).__name__}")

        def pt(value: Any) -> tuple[float, float] | None:
            return None if value is None else (float(value[0]), float(value[1]))

        def num(value: Any) -> float | None:
            return None if value is None else float(value)

        width, height = (int(v) for v in (data.get("size") or (0, 0)))
        return cls(mask=np.broadcast_to(np.False_, (height, width)), confidence=float(data.get("confidence", 0.0)),
                   found=bool(data.get("found", False)), modality=str(data.get("modality", "")),
                   center=pt(data.get("center")), radius=num(data.get("radius")),
                   iris_center=pt(data.get("iris_center")), iris_radius=num(data.get("iris_radius")),
                   reason=str(data.get("reason", "")), axes=pt(data.get("axes")), angle=float(data.get("angle", 0.0)),
                   iris_axes=pt(data.get("iris_axes")), iris_angle=float(data.get("iris_angle", 0.0)),
                   finder=str(data.get("finder", "")))


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` itself when it is an RGB uint8 array at least 16 pixels on each side; else AttentionError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise AttentionError(f"Expected an RGB uint8 image of shape (H, W, 3), got {got}.")
    if min(image.shape[:2]) < 16:
        raise AttentionError(
            f"The image is {image.shape[1]}x{image.shape[0]} pixels; expected at least 16 on each side.")
    return image


def _shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The image with its long side at most ``side``, and the factor from it back to the original."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, max(h, w) / max(small.shape[:2])


def _brightest(image: np.ndarray) -> np.ndarray:
    """Each pixel's brightest channel, ``image.max(axis=2)``, a plane at a time (numpy's reduction over
    an axis of three is about ten times slower)."""
    red, green, blue = cv2.split(image)
    return np.asarray(cv2.max(cv2.max(red, green), blue))


def _field_of_view(image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float], float]:
    """A fundus camera's circular field: mask at the working size, roundness, centre and radius there."""
    small = image
    # The retina is red-dominant, the surround near black: the brightest channel separates them.
    bright = cv2.GaussianBlur(_brightest(small), (0, 0), 1.5)
    level = max(12.0, 0.12 * float(np.percentile(bright, 99)))
    binary = cv2.morphologyEx((bright > level).astype(np.uint8), cv2.MORPH_OPEN,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros(binary.shape, np.uint8)
    if not contours:
        return mask.astype(bool), 0.0, (0.0, 0.0), 0.0
    biggest = max(contours, key=cv2.contourArea)
    # The field's own outline, filled: dark vessels or lesions at its edge do not cut it.
    hull = cv2.convexHull(biggest)
    cv2.drawContours(mask, [hull], -1, 1, thickness=cv2.FILLED)
    area = float(mask.sum())
    (cx, cy), radius = cv2.minEnclosingCircle(hull)
    roundness = area / (np.pi * radius * radius) if radius > 0 else 0.0
    if len(hull) >= 5:
        # Some cameras store the field stretched into an ellipse; judge roundness against that.
        (_, _), (a, b), _ = cv2.fitEllipse(hull)
        ellipse_area = np.pi * a * b / 4
        if ellipse_area > 0:
            roundness = max(roundness, min(area / ellipse_area, ellipse_area / area))
    # A field clipped by the frame's top and bottom is still a field: measure it within the frame.
    return mask.astype(bool), float(min(roundness, 1.0)), (float(cx), float(cy)), float(radius)


def detect_modality(image: np.ndarray) -> str:
    """``fundus`` for a bright, red-dominant, round field on a near-black surround, else ``external``."""
    image = check_image(image)
    small, _ = _shrink(image, 256)
    h, w = small.shape[:2]
    lum = _brightest(small).astype(np.float32)
    corners = np.concatenate([lum[: h // 10, : w // 10].ravel(), lum[: h // 10, -(w // 10):].ravel(),
                              lum[-(h // 10):, : w // 10].ravel(), lum[-(h // 10):, -(w // 10):].ravel()])
    if corners.size == 0 or float(np.median(corners)) > 30.0:
        return "external"
    mask, roundness, _, _ = _field_of_view(small)
    if mask.mean() < MIN_FUNDUS_AREA or roundness < MIN_FUNDUS_ROUNDNESS:
        return "external"
    inside = small[mask].astype(np.float32)
    r, g, b = (float(np.median(inside[:, i])) for i in range(3))
    # Retina: red above green above blue (orange to red). Slit-lamp photographs on a dark
    # background fail this, or the roundness above.
    return "fundus" if r > 40 and r >= 1.1 * g and g >= 0.9 * b else "external"


def _find_fundus(image: np.ndarray) -> LensRegion:
    small, scale = _shrink(image, ANALYSIS_SIDE)
    mask_small, roundness, (cx, cy), radius = _field_of_view(small)
    area = float(mask_small.mean())
    h, w = image.shape[:2]
    mask = cv2.resize(mask_small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    confidence = float(np.clip(roundness, 0.0, 1.0)) if area >= MIN_FUNDUS_AREA else 0.0
    found = confidence >= MIN_FUNDUS_ROUNDNESS
    reason = "" if found else "No round, bright field of view was found on a dark surround."
    return LensRegion(mask=mask if found else np.zeros((h, w), bool), confidence=confidence, found=found,
                      modality="fundus", center=(cx * scale, cy * scale) if found else None,
                      radius=radius * scale if found else None, reason=reason, finder="field")


def _circle_means(gray: np.ndarray, cx: np.ndarray, cy: np.ndarray, radii: np.ndarray,
                  angles: np.ndarray) -> np.ndarray:
    """Mean of ``gray`` on circles: shape (centres, radii, angles) samples -> (centres, radii)."""
    n_c, n_r, n_a = len(cx), len(radii), len(angles)
    dx = (radii[:, None] * np.cos(angles)[None, :]).astype(np.float32)
    dy = (radii[:, None] * np.sin(angles)[None, :]).astype(np.float32)
    # remap takes maps of fewer than 32767 rows: lay the samples out in rows of 4096.
    total = n_c * n_r * n_a
    rows = -(-total // 4096)
    map_x = np.empty(rows * 4096, np.float32)
    map_y = np.empty(rows * 4096, np.float32)
    map_x[total:] = 0
    map_y[total:] = 0
    np.add(np.asarray(cx, np.float32)[:, None, None], dx[None], out=map_x[:total].reshape(n_c, n_r, n_a))
    np.add(np.asarray(cy, np.float32)[:, None, None], dy[None], out=map_y[:total].reshape(n_c, n_r, n_a))
    samples = cv2.remap(gray, map_x.reshape(rows, 4096), map_y.reshape(rows, 4096), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    return samples.ravel()[:total].reshape(n_c, n_r, n_a).mean(axis=2)


def _radial_derivative(profiles: np.ndarray, step: float) -> np.ndarray:
    """d/dr of Gaussian-smoothed profiles (centres, radii), at the midpoints between radii."""
    kernel = np.array([1, 4, 6, 4, 1], np.float32) / 16
    padded = np.pad(profiles, ((0, 0), (2, 2)), mode="edge")
    smooth = sum(kernel[i] * padded[:, i:i + profiles.shape[1]] for i in range(5))
    return np.diff(smooth, axis=1) / step


def _grid(cx: float, cy: float, half_w: float, half_h: float, step: float, w: int,
          h: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate centres: a grid of ``step`` around (cx, cy), inside the image."""
    xs = np.arange(max(0.0, cx - half_w), min(w - 1.0, cx + half_w) + 1e-6, step, dtype=np.float32)
    ys = np.arange(max(0.0, cy - half_h), min(h - 1.0, cy + half_h) + 1e-6, step, dtype=np.float32)
    if xs.size == 0:
        xs = np.array([cx], np.float32)
    if ys.size == 0:
        ys = np.array([cy], np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel(), gy.ravel()


def _fit_circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (algebraic) circle through points: centre x, centre y, radius."""
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    b = x * x + y * y
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    return float(cx), float(cy), float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 0.0)))


def _refine_pupil(gray: np.ndarray, cx: float, cy: float, r: float,
                  r_max: float) -> tuple[float, float, float, float]:
    """Edge points of the pupil margin along 90 rays, fitted by a circle: (x, y, r, share of rays that agree)."""
    n_rays = 90
    angles = np.linspace(0, 2 * np.pi, n_rays, endpoint=False, dtype=np.float32)
    # Out to the iris edge at most, so the limbus never stands in for the pupil margin.
    radii = np.linspace(0.6 * r, max(min(1.4 * r, r_max), 0.7 * r), 37, dtype=np.float32)
    xs = cx + radii[None, :] * np.cos(angles)[:, None]
    ys = cy + radii[None, :] * np.sin(angles)[:, None]
    rays = cv2.remap(gray, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    deriv = _radial_derivative(rays, float(radii[1] - radii[0]))
    # The margin's polarity is the one the whole circle agrees on (dark pupil or white cataract).
    polarity = 1.0 if deriv.mean(axis=0).max() >= -deriv.mean(axis=0).min() else -1.0
    signed = deriv * polarity
    idx = np.argmax(signed, axis=1)
    mid = 0.5 * (radii[:-1] + radii[1:])
    # Sub-sample position of each ray's edge by a parabola through the peak and its neighbours.
    inner = np.clip(idx, 1, len(mid) - 2)
    y0, y1, y2 = (signed[np.arange(n_rays), inner + d] for d in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    offset = np.where(np.abs(denom) > 1e-9, 0.5 * (y0 - y2) / np.where(np.abs(denom) > 1e-9, denom, 1), 0.0)
    edge_r = mid[inner] + np.clip(offset, -1, 1) * (mid[1] - mid[0])
    strength = signed[np.arange(n_rays), idx]
    px = cx + edge_r * np.cos(angles)
    py = cy + edge_r * np.sin(angles)
    strong = strength > 0.25 * float(np.median(strength[strength > 0])) if (strength > 0).any() else strength > 0
    fx, fy, fr = cx, cy, r
    # Trimmed fits, tolerance narrowing round the current circle: reflections, lashes and
    # spokes of cortical opacity give stray edge points, which stay out.
    for tolerance in (0.2, 0.12, 0.08, 0.08):
        keep = strong & (np.abs(np.hypot(px - fx, py - fy) - fr) < max(1.0, tolerance * fr))
        if keep.sum() < 12:
            break
        fx, fy, fr = _fit_circle(px[keep], py[keep])
    # Agreement: rays with an edge of either polarity on the circle at least half as strong as
    # their strongest edge anywhere. A spoke of cortical opacity reaching the margin flips the
    # edge's polarity there but not its place; iris fibres may outdo a faint margin a little.
    either = np.abs(deriv)
    ray_d = np.hypot(cx + mid[None, :] * np.cos(angles)[:, None] - fx,
                     cy + mid[None, :] * np.sin(angles)[:, None] - fy)
    on_circle = np.abs(ray_d - fr) < max(1.5, 0.08 * fr)
    at_circle = np.where(on_circle, either, 0.0).max(axis=1)
    agree = float((at_circle >= AGREE_FRACTION * either.max(axis=1) + 1e-9).mean())
    return fx, fy, fr, agree


def _joint_search(gray: np.ndarray, gx: np.ndarray, gy: np.ndarray, r_lo: float, r_hi: float,
                  step: float) -> tuple[int, float, float]:
    """Best iris (centre index, radius, score): its limbus plus the best pupil margin inside it.

    The integro-differential operator (the radial derivative of the mean along circles). The
    limbus is sought on the left and right arcs only (lids and lashes cover the top and the
    bottom) and must be brighter outside (the white of the eye); the pupil margin, of either
    polarity, on the whole circle within PUPIL_RATIO_RANGE of the iris radius around the same
    centre. Scoring the pair keeps the search from settling on a circle that runs along the
    pupil on one side and the limbus on the other.
    """
    right = np.deg2rad(np.linspace(-35, 30, 12)).astype(np.float32)
    left = np.deg2rad(np.linspace(150, 215, 12)).astype(np.float32)
    full = np.linspace(0, 2 * np.pi, 24, endpoint=False, dtype=np.float32)
    radii = np.arange(max(1.0, PUPIL_RATIO_RANGE[0] * r_lo), r_hi + step, step, dtype=np.float32)
    mid = 0.5 * (radii[1:] + radii[:-1])
    # Both sides must show the edge at the same radius (the weaker side counts), so a circle
    # that meets the white of the eye on one side only does not score. Times r, that is
    # d/d(log r): the wide limbus is not beaten by the sharper, smaller pupil margin.
    sides = [np.clip(_radial_derivative(_circle_means(gray, gx, gy, radii, a), step), 0, None)
             for a in (left, right)]
    limbus = np.minimum(*sides) * mid
    margin = np.abs(_radial_derivative(_circle_means(gray, gx, gy, radii, full), step)) * mid
    best = (-1.0, 0, 0.0)
    for j in np.flatnonzero((mid >= r_lo) & (mid <= r_hi)):
        inner = (mid >= PUPIL_RATIO_RANGE[0] * mid[j]) & (mid <= PUPIL_RATIO_RANGE[1] * mid[j])
        if not inner.any():
            continue
        score = limbus[:, j] + margin[:, inner].max(axis=1)
        ci = int(np.argmax(score))
        if score[ci] > best[0]:
            best = (float(score[ci]), ci, float(mid[j]))
    return best[1], best[2], best[0]


def _pupil_candidates(gray: np.ndarray, gx: np.ndarray, gy: np.ndarray, radii: np.ndarray,
                      angles: np.ndarray, n: int = 3) -> list[tuple[float, float, float]]:
    """The ``n`` strongest circular edges (either polarity) at distinct radii: (x, y, r) each."""
    profiles = _circle_means(gray, gx, gy, radii, angles)
    score = np.abs(_radial_derivative(profiles, float(radii[1] - radii[0])))
    mid = 0.5 * (radii[1:] + radii[:-1])
    best_c = score.argmax(axis=0)
    by_r = score.max(axis=0)
    # Local maxima over the radius, strongest first, at least 15% apart in radius.
    padded = np.pad(by_r, 1, constant_values=-np.inf)
    peaks = np.flatnonzero((by_r >= padded[:-2]) & (by_r >= padded[2:]))
    out: list[tuple[float, float, float]] = []
    for j in peaks[np.argsort(by_r[peaks])[::-1]]:
        if all(abs(mid[j] - r) > 0.15 * r for _, _, r in out):
            out.append((float(gx[best_c[j]]), float(gy[best_c[j]]), float(mid[j])))
        if len(out) == n:
            break
    return out


def _pupil_confidence(gray: np.ndarray, fit: tuple[float, float, float, float],
                      iris: tuple[float, float, float]) -> tuple[float, float, float]:
    """(confidence, contrast, agreement) of a fitted pupil circle inside a found iris.

    Agreement: from :func:`_refine_pupil`. Contrast: the median of a thin ring just inside the
    margin against that of a thin ring of iris just outside, over their quartile spreads, so
    texture (spokes, plaques, iris fibres) does not pass for a clear margin; the constant keeps
    flat images from dividing by nearly nothing. A circle that is not inside the iris as a
    pupil is (too big, too small or off centre) counts at 0.3 of its worth.
    """
    pcx, pcy, rp, agree = fit
    icx, icy, R = iris
    h, w = gray.shape
    x0, x1 = max(0, int(pcx - 1.6 * rp)), min(w, int(pcx + 1.6 * rp) + 2)
    y0, y1 = max(0, int(pcy - 1.6 * rp)), min(h, int(pcy + 1.6 * rp) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d_p = np.hypot(xx - pcx, yy - pcy)
    box = gray[y0:y1, x0:x1]
    # Thin rings either side of the margin: what is deeper inside (a plaque, spokes) does not
    # blur the comparison.
    inside = box[(d_p > 0.78 * rp) & (d_p < 0.94 * rp)]
    ring = box[(d_p > 1.08 * rp) & (d_p < 1.08 * rp + max(2.0, 0.2 * rp))
               & (np.hypot(xx - icx, yy - icy) < 0.95 * R)]
    contrast = 0.0
    if inside.size >= 10 and ring.size >= 10:
        q_in, q_ring = np.percentile(inside, [25, 50, 75]), np.percentile(ring, [25, 50, 75])
        contrast = float(abs(q_in[1] - q_ring[1]) / ((q_in[2] - q_in[0]) + (q_ring[2] - q_ring[0]) + 6.0))
    plausible = (PUPIL_RATIO_RANGE[0] * 0.9 <= rp / R <= PUPIL_RATIO_RANGE[1] * 1.08
                 and float(np.hypot(pcx - icx, pcy - icy)) <= 0.2 * R)
    confidence = float(np.clip((agree - AGREE_RANGE[0]) / (AGREE_RANGE[1] - AGREE_RANGE[0]), 0, 1)
                       * np.clip(contrast / FULL_CONTRAST, 0, 1) ** CONTRAST_EXPONENT
                       * (1.0 if plausible else 0.3))
    return confidence, contrast, agree


def _limbus_contrast(gray: np.ndarray, cx: float, cy: float, R: float) -> float:
    """How clearly the white of the eye is brighter than the iris, on the weaker of the two sides.

    Median of a band just outside the limbus minus that of a band just inside, on the left and
    on the right arcs, over their quartile spreads; an iris is only an iris with sclera on both
    sides.
    """
    values = []
    for lo, hi in ((-35, 30), (150, 215)):
        angles = np.deg2rad(np.linspace(lo, hi, 24)).astype(np.float32)
        outer = _circle_samples(gray, cx, cy, np.linspace(1.08 * R, 1.25 * R, 5), angles)
        inner = _circle_samples(gray, cx, cy, np.linspace(0.75 * R, 0.92 * R, 5), angles)
        q_o, q_i = np.percentile(outer, [25, 50, 75]), np.percentile(inner, [25, 50, 75])
        values.append((q_o[1] - q_i[1]) / ((q_o[2] - q_o[0]) + (q_i[2] - q_i[0]) + 6.0))
    return float(min(values))


def _circle_samples(gray: np.ndarray, cx: float, cy: float, radii: np.ndarray,
                    angles: np.ndarray) -> np.ndarray:
    xs = (cx + radii[:, None] * np.cos(angles)[None, :]).astype(np.float32)
    ys = (cy + radii[:, None] * np.sin(angles)[None, :]).astype(np.float32)
    return cv2.remap(gray, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel()


@functools.lru_cache(maxsize=1)
def _shipped_lens_net() -> Any:
    """The shipped learned finder, loaded once per process; None when its weights are not there."""
    from components.lens import net as lens_net

    if not lens_net.LENS_FINDER_PATH.is_file():
        return None
    return lens_net.load_lens_net()


def _find_pupil_learned(image: np.ndarray, net: Any) -> LensRegion:
    from components.lens import net as lens_net

    h0, w0 = image.shape[:2]
    fit = lens_net.locate(net, image)
    pupil = fit.pupil
    if not fit.found or pupil.center is None or pupil.axes is None:
        return LensRegion(mask=np.zeros((h0, w0), bool), confidence=pupil.confidence, found=False,
                          modality="external", reason=pupil.reason, finder=LEARNED)
    iris_radius = None if fit.iris_axes is None else math.sqrt(fit.iris_axes[0] * fit.iris_axes[1]) / 2
    return LensRegion(mask=pupil.mask((h0, w0)), confidence=pupil.confidence, found=True, modality="external",
                      center=pupil.center, radius=pupil.radius, iris_center=fit.iris_center, iris_radius=iris_radius,
                      axes=pupil.axes, angle=pupil.angle, iris_axes=fit.iris_axes, iris_angle=fit.iris_angle,
                      finder=LEARNED)


def _find_pupil(image: np.ndarray, finder: str | None = None) -> LensRegion:
    if finder is None:
        try:
            finder = config.choice(config.LENS_FINDER)
        except config.ConfigError as error:
            raise AttentionError(str(error)) from None
    if finder not in FINDERS:
        raise AttentionError(f"Unknown lens finder {finder!r}; expected one of {', '.join(FINDERS)}.")
    if finder != CIRCLE:
        net = _shipped_lens_net()
        if net is not None:
            return _find_pupil_learned(image, net)
        if finder == LEARNED:
            raise AttentionError("The learned lens finder's weights are missing; "
                                 "train them with python -m models.training.lens_net.")
    return _find_pupil_circle(image)


def _find_pupil_circle(image: np.ndarray) -> LensRegion:
    h0, w0 = image.shape[:2]
    small, scale = _shrink(image, 256)
    h, w = small.shape[:2]
    gray8 = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    # A median filter removes the corneal reflections, small and far brighter than anything
    # round them, which would otherwise give the strongest circular edges of all.
    gray = cv2.GaussianBlur(cv2.medianBlur(gray8, 5).astype(np.float32), (0, 0), 1.0)
    short = float(min(h, w))
    r_lo, r_hi = IRIS_RADIUS_RANGE[0] * short, IRIS_RADIUS_RANGE[1] * short

    # 1. Iris centre and radius, coarse to fine: a half-size image on a grid, then full size.
    half = cv2.resize(gray, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    gx, gy = _grid(w / 4, h / 4, w * 0.2, h * 0.2, max(2.0, short / 80), w // 2, h // 2)
    ci, R, _ = _joint_search(half, gx, gy, r_lo / 2, r_hi / 2, 1.0)
    icx, icy, R = 2 * float(gx[ci]) + 0.5, 2 * float(gy[ci]) + 0.5, 2 * R
    gx, gy = _grid(icx, icy, 4.0, 4.0, 1.0, w, h)
    ci, R, _ = _joint_search(gray, gx, gy, max(r_lo, 0.85 * R), min(r_hi, 1.15 * R), 0.75)
    icx, icy = float(gx[ci]), float(gy[ci])

    # 2. The pupil: circular edges of either polarity inside the iris, roughly concentric with
    #    it, each fitted to edge points found along rays; the one most rays agree on wins.
    #    A grey opening as wide as a tenth of the iris first removes what is small and bright
    #    (corneal reflections, grains of a plaque), which would give sharp false circles.
    k = max(3, int(0.12 * R) | 1)
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    full = np.linspace(0, 2 * np.pi, 48, endpoint=False, dtype=np.float32)
    radii = np.arange(PUPIL_RATIO_RANGE[0] * R, PUPIL_RATIO_RANGE[1] * R, 0.75, dtype=np.float32)
    gx, gy = _grid(icx, icy, 0.12 * R, 0.12 * R, 1.0, w, h)
    # Iris fibres are textured, the pupil is smooth whatever its shade: a map of local texture
    # finds a margin that brightness alone misses (a grey-brown nucleus in a brown iris).
    mean = cv2.blur(opened, (5, 5))
    texture = np.sqrt(np.clip(cv2.blur(opened * opened, (5, 5)) - mean * mean, 0, None))
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5) * TEXTURE_GAIN
    scored = []
    for channel in (opened, texture):
        for cx0, cy0, r0 in _pupil_candidates(channel, gx, gy, radii, full, n=4):
            fit = _refine_pupil(channel, cx0, cy0, r0, 0.8 * R)
            scored.append((_pupil_confidence(channel, fit, (icx, icy, R)), fit))
    if not scored:
        return _no_pupil((h0, w0), 0.0)
    scored.sort(key=lambda item: -item[0][0])
    best = scored[0]
    # A plaque or a nucleus inside the pupil gives a circle of its own: of two sure circles one
    # inside the other, the outer is the pupil margin.
    for score, fit in scored[1:]:
        if (score[0] >= max(MIN_LENS_CONFIDENCE, 0.8 * best[0][0]) and fit[2] > 1.15 * best[1][2]
                and np.hypot(fit[0] - best[1][0], fit[1] - best[1][1]) < 0.5 * fit[2]):
            best = (score, fit)
    (confidence, _, _), (pcx, pcy, rp, _) = best
    limbus = _limbus_contrast(gray, icx, icy, R)
    confidence *= float(np.clip(limbus / FULL_LIMBUS, 0.0, 1.0)) ** LIMBUS_EXPONENT
    if confidence < MIN_LENS_CONFIDENCE or rp < 2.0:
        return _no_pupil((h0, w0), confidence)
    centre, radius = (pcx * scale, pcy * scale), rp * scale
    mask = np.zeros((h0, w0), np.uint8)
    cv2.circle(mask, (round(centre[0] * 16), round(centre[1] * 16)), round(radius * 16), 1,
               thickness=cv2.FILLED, lineType=cv2.LINE_8, shift=4)
    return LensRegion(mask=mask.astype(bool), confidence=confidence, found=True, modality="external",
                      center=centre, radius=radius, iris_center=(icx * scale, icy * scale), iris_radius=R * scale,
                      finder=CIRCLE)


def _no_pupil(shape: tuple[int, int], confidence: float) -> LensRegion:
    return LensRegion(mask=np.zeros(shape, bool), confidence=float(confidence), found=False, modality="external",
                      reason="No clear pupil was found: the lens region cannot be located with confidence.",
                      finder=CIRCLE)


def find_lens(image: np.ndarray, modality: str | None = None, *, finder: str | None = None) -> LensRegion:
    """Locate the pupil (external and slit-lamp photographs) or the field of view (fundus).

    ``modality`` is one of :data:`~components.screening.vocabulary.ATTENTION_MODALITIES` (or an alias such
    as ``slit_lamp``), or None to detect it. When the finder is not sure the result has ``found``
    False, an empty mask and a ``reason``; it never guesses silently.

    ``finder`` picks the pupil finder: ``"learned"`` (:mod:`components.lens.net`, the default
    when its weights are shipped), or ``"circle"`` (the circle search below, the default without
    them); None takes the ``CATARACT_CAM_LENS_FINDER`` environment variable, else the default.

    Raises:
        AttentionError: a malformed image, an unknown modality or finder, or ``"learned"`` without weights.
    """
    image = check_image(image)
    if finder not in (None, *FINDERS):
        raise AttentionError(f"Unknown lens finder {finder!r}; expected one of {', '.join(FINDERS)} or None.")
    modality = _check_modality(modality) or detect_modality(image)
    return _find_fundus(image) if modality == "fundus" else _find_pupil(image, finder)


# Names for the two kinds of photograph that the vocabulary's parser does not know.
_MODALITY_ALIASES = {"anterior": "external", "retina": "fundus", "retinal": "fundus"}


def _check_modality(modality: str | None) -> str | None:
    if modality is None:
        return None
    key = str(modality).strip().lower().replace("-", "").replace(" ", "")
    try:
        return attention_modality(_MODALITY_ALIASES.get(key, key))
    except ValueError:
        raise AttentionError(f"Unknown modality {modality!r}; expected one of {', '.join(ATTENTION_MODALITIES)} "
                             "or None to detect it.") from None
