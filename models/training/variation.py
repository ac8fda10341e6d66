"""Real-photograph variation for rendered eyes: what web photographs do to an eye, applied after the render.

Real external eye photographs differ from the generator's renders in ways the renders never show:
they are small, rotated or sheared (augmented) with smeared or filled borders, framed as macro
shots or half faces, seen obliquely, JPEG-compressed hard, lit by glare spots and ring flashes,
with dark irises, white pupils, heavy lids and watermarks. :func:`vary` applies a seeded random
selection of these to a rendered photograph and, where the geometry changes, to its masks, so
a lens finder can be trained and measured on them while the generator's own output stays as it
is. The same seed gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["BORDERS", "VARIATIONS", "Varied", "vary"]

VARIATIONS: tuple[str, ...] = (
    "dark_iris", "white_pupil", "glare", "ring_flash", "lids", "oblique", "rotate_shear", "macro", "half_face",
    "small", "jpeg", "text", "far", "macro_white",
)
# The last two (added 2026-12-07, after the finder missed them in real photographs) are drawn from a
# stream of their own, so every photograph the first twelve made keeps its bytes unless one of them
# is chosen too:
# - far: half-face framing with the eye far from the camera, a pupil of 6 to 20 px in a photograph
#   250 to 370 px wide;
# - macro_white: a macro close-up of a mature cataract, a white or grey pupil of 75 to 92 px radius
#   filling most of a photograph about 240 px wide, its iris mostly outside the frame.
_EXTRA: tuple[str, ...] = ("far", "macro_white")
BORDERS: tuple[str, ...] = ("smear", "white", "black")
# Chance of each variation per photograph; the geometry ones exclude each other where noted in vary().
_CHANCE: dict[str, float] = {
    "dark_iris": 0.35, "white_pupil": 0.15, "glare": 0.4, "ring_flash": 0.15, "lids": 0.3, "oblique": 0.35,
    "rotate_shear": 0.4, "macro": 0.2, "half_face": 0.2, "small": 0.5, "jpeg": 0.5, "text": 0.15,
    "far": 0.12, "macro_white": 0.1,
}


@dataclass(frozen=True)
class Varied:
    """A varied photograph, its masks moved with it, and what was done (name -> parameters)."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    applied: dict[str, Any] = field(default_factory=dict)


def _check(image: Any, masks: Any) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError("image must be an RGB uint8 numpy array of shape (H, W, 3).")
    if not isinstance(masks, Mapping) or "pupil" not in masks or "iris" not in masks:
        raise ValueError("masks must be a mapping holding at least 'pupil' and 'iris' masks.")
    for name, mask in masks.items():
        if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
            raise ValueError(f"The {name} mask must be an array of the image's height and width.")


def _circle(mask: np.ndarray) -> tuple[float, float, float]:
    """Centre and radius of a mask's pixels (radius from its area)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return mask.shape[1] / 2, mask.shape[0] / 2, 1.0
    return float(xs.mean()), float(ys.mean()), math.sqrt(xs.size / math.pi)


def _warp(image: np.ndarray, masks: dict[str, np.ndarray], m: np.ndarray, size: tuple[int, int],
          border: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    mode = cv2.BORDER_REPLICATE if border == "smear" else cv2.BORDER_CONSTANT
    value = (255, 255, 255) if border == "white" else (0, 0, 0)
    out = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=value)
    moved = {k: cv2.warpAffine(v, m, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
             for k, v in masks.items()}
    return out, moved


def _photometric_eye(rng: np.random.Generator, img: np.ndarray, masks: dict[str, np.ndarray],
                     chosen: set[str], applied: dict[str, Any]) -> np.ndarray:
    """Iris, pupil and light changes, before any geometry (they follow the eye's own structures)."""
    f = img.astype(np.float32)
    pupil = masks["pupil"] > 0
    iris_ring = (masks["iris"] > 0) & ~pupil
    if "dark_iris" in chosen:
        gain = float(rng.uniform(0.25, 0.6))
        tint = np.array([1.0, 0.8, 0.6], np.float32) * gain
        f[iris_ring] *= tint
        applied["dark_iris"] = {"gain": round(gain, 3)}
    if "macro_white" in chosen:
        _mature_pupil(rng, f, masks, applied)
        pupil = masks["pupil"] > 0
    if "white_pupil" in chosen and "macro_white" not in chosen:
        level = float(rng.uniform(150, 235))
        soft = cv2.GaussianBlur(pupil.astype(np.float32), (0, 0), 1.5)[..., None]
        f = f * (1 - soft * 0.9) + soft * 0.9 * np.array([level, level * 0.97, level * 0.9], np.float32)
        applied["white_pupil"] = {"level": round(level, 1)}
    cx, cy, r = _circle(pupil)
    h, w = f.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if "glare" in chosen:
        spots = int(rng.integers(1, 4))
        for _ in range(spots):
            gx, gy = cx + rng.uniform(-1.2, 1.2) * r, cy + rng.uniform(-1.2, 1.2) * r
            s = max(1.0, float(rng.uniform(0.1, 0.35)) * r)
            f += 255 * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * s * s))[..., None]
        applied["glare"] = {"spots": spots}
    if "ring_flash" in chosen:
        rr = float(rng.uniform(0.4, 1.6)) * r
        width = max(0.8, 0.12 * r)
        ring = np.exp(-((np.hypot(xx - cx, yy - cy) - rr) ** 2) / (2 * width * width))
        f += 230 * ring[..., None]
        applied["ring_flash"] = {"radius": round(rr, 1)}
    return np.clip(f, 0, 255)


def _mature_pupil(rng: np.random.Generator, f: np.ndarray, masks: dict[str, np.ndarray],
                  applied: dict[str, Any]) -> None:
    """A dilated pupil (0.72-0.9 iris radii) filled by a mature cataract: white or grey, mottled, soft-edged.

    The pupil mask grows with it: the pupil is what the cataract fills.
    """
    cx, cy, r_pupil = _circle(masks["pupil"] > 0)
    _, _, r_iris = _circle(masks["iris"] > 0)
    radius = max(r_pupil, r_iris * float(rng.uniform(0.72, 0.9)))
    h, w = f.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = np.hypot(xx - cx, yy - cy) <= radius
    masks["pupil"] = np.where(inside, 255, 0).astype(np.uint8)
    level = float(rng.uniform(150, 240))
    tint = np.array([1.0, float(rng.uniform(0.92, 1.0)), float(rng.uniform(0.8, 0.97))], np.float32)
    mottle = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(1.0, radius / 10))
    mottle = mottle * np.float32(float(rng.uniform(8, 28)) / max(float(mottle.std()), 1e-6))
    cataract = (level + mottle)[..., None] * tint
    soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(1.0, radius / 25))[..., None]
    f[:] = f * (1 - soft) + np.clip(cataract, 0, 255) * soft
    applied["macro_white"] = {"pupil_radius": round(radius, 1), "level": round(level, 1)}


def _lids(rng: np.random.Generator, f: np.ndarray, masks: dict[str, np.ndarray], applied: dict[str, Any]) -> None:
    """A skin-coloured band over the top (and maybe the bottom) of the iris; the masks keep the true circles."""
    cx, cy, r_iris = _circle(masks["iris"] > 0)
    skin = masks.get("skin")
    colour = f[skin > 0].mean(0) if skin is not None and (skin > 0).any() else np.array([170, 130, 110], np.float32)
    h, w = f.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cover = float(rng.uniform(0.2, 0.7))
    edge = cy - r_iris + 2 * r_iris * cover + 0.15 * r_iris * ((xx - cx) / max(r_iris, 1.0)) ** 2
    lid = yy < edge
    if rng.uniform() < 0.4:
        lid |= yy > cy + r_iris * float(rng.uniform(0.5, 0.9))
    f[lid] = f[lid] * 0.2 + colour * 0.8
    applied["lids"] = {"cover": round(cover, 3)}


def _frame_about(m: np.ndarray, centre: tuple[float, float], half: float, offset: tuple[float, float]
                 ) -> tuple[np.ndarray, int, int]:
    """``m`` then a 4:3 frame of height ``2 * half`` about where ``m`` takes ``centre``, moved by ``offset``.

    Returns the new transform and the frame's width and height.
    """
    pcx, pcy, _ = (m @ np.array([centre[0], centre[1], 1.0])).tolist()
    x0, y0 = pcx + offset[0] - half * 4 / 3, pcy + offset[1] - half
    return np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ m, round(half * 8 / 3), round(2 * half)


def _geometry(rng: np.random.Generator, img: np.ndarray, masks: dict[str, np.ndarray], chosen: set[str],
              border: str, applied: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    h, w = img.shape[:2]
    cx, cy, r_iris = _circle(masks["iris"] > 0)
    m = np.eye(3)
    if "oblique" in chosen:
        squeeze = float(rng.uniform(0.55, 0.9))
        a = np.array([[squeeze, 0, cx * (1 - squeeze)], [0, 1, 0], [0, 0, 1]])
        m = a @ m
        applied["oblique"] = {"squeeze": round(squeeze, 3)}
    if "rotate_shear" in chosen:
        angle = float(rng.uniform(-40, 40))
        shear = float(rng.uniform(-0.3, 0.3))
        rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), [0, 0, 1]])
        sh = np.array([[1, shear, -shear * h / 2], [0, 1, 0], [0, 0, 1]])
        m = sh @ rot @ m
        applied["rotate_shear"] = {"angle": round(angle, 2), "shear": round(shear, 3), "border": border}
    out_w, out_h = w, h
    if "macro_white" in chosen:
        # Tight about the big pupil: it fills most of the frame's height, the iris mostly outside.
        _, _, r_pupil = _circle(masks["pupil"] > 0)
        half = r_pupil * float(rng.uniform(0.95, 1.25))
        ox, oy = (rng.uniform(-0.15, 0.15, 2) * r_pupil).tolist()
        m, out_w, out_h = _frame_about(m, (cx, cy), half, (ox, oy))
        applied["macro_white"] = {**applied.get("macro_white", {}), "half_height": round(half, 1)}
    elif "far" in chosen:
        # The eye far from the camera: shrunk about a random point, the rest of the frame filled by the border.
        _, _, r_pupil = _circle(masks["pupil"] > 0)
        width = float(rng.uniform(250, 370))
        radius = float(rng.uniform(6, 20))
        zoom = min(0.9, max(0.08, radius / max(r_pupil, 1.0) * w / width))
        m = np.array([[zoom, 0, w * (1 - zoom) * rng.uniform(0.15, 0.85)],
                      [0, zoom, h * (1 - zoom) * rng.uniform(0.15, 0.85)], [0, 0, 1]]) @ m
        applied["far"] = {"zoom": round(zoom, 3), "width": round(width), "pupil_radius": round(radius, 1)}
    elif "macro" in chosen:
        # A tight frame about the iris, which the frame's edge may cut.
        half = r_iris * float(rng.uniform(0.9, 1.6))
        ox, oy = (rng.uniform(-0.5, 0.5, 2) * r_iris).tolist()
        m, out_w, out_h = _frame_about(m, (cx, cy), half, (ox, oy))
        applied["macro"] = {"half_height": round(half, 1)}
    elif "half_face" in chosen:
        # Zoom out: the eye becomes a small part of a wider frame, the rest filled by the border rule.
        zoom = float(rng.uniform(0.4, 0.7))
        m = np.array([[zoom, 0, w * (1 - zoom) * rng.uniform(0.2, 0.8)],
                      [0, zoom, h * (1 - zoom) * rng.uniform(0.2, 0.8)], [0, 0, 1]]) @ m
        applied["half_face"] = {"zoom": round(zoom, 3)}
    if np.allclose(m, np.eye(3)) and (out_w, out_h) == (w, h):
        return img, masks
    wide = "half_face" in chosen or "far" in chosen
    half_face_border = "smear" if wide and border != "smear" and rng.uniform() < 0.5 else border
    return _warp(img, masks, m[:2].astype(np.float64), (max(out_w, 8), max(out_h, 8)), half_face_border)


def _text(rng: np.random.Generator, img: np.ndarray, applied: dict[str, Any]) -> np.ndarray:
    h, w = img.shape[:2]
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    word = "".join(letters[int(i)] for i in rng.integers(0, len(letters), int(rng.integers(3, 10))))
    scale = max(0.3, min(h, w) / 300 * float(rng.uniform(0.6, 1.4)))
    org = (int(rng.uniform(0.02, 0.5) * w), int(rng.uniform(0.1, 0.95) * h))
    shade = 255 if rng.uniform() < 0.6 else 20
    overlay = img.copy()
    cv2.putText(overlay, word, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (shade, shade, shade),
                max(1, round(scale * 2)), cv2.LINE_AA)
    alpha = float(rng.uniform(0.35, 0.9))
    applied["text"] = {"characters": len(word), "alpha": round(alpha, 2)}
    return cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0.0)


def vary(image: np.ndarray, masks: Mapping[str, np.ndarray], seed: int, *,
         only: tuple[str, ...] | None = None) -> Varied:
    """A seeded random selection of real-photograph variation applied to a photograph and its masks.

    ``masks``: name -> (H, W) (at least ``pupil`` and ``iris``, as ``render_eye`` gives); they come
    back as 0/255 uint8.
    ``only``: apply exactly these variations (each from ``VARIATIONS``) instead of a random draw.
    The masks keep the true pupil and iris (a lid covering the iris does not shrink them): they
    are what a hand annotation would draw. The result depends only on the inputs and ``seed``.

    Raises:
        TypeError: ``image`` is not RGB uint8, or ``seed`` is not a non-negative integer.
        ValueError: masks missing or of another size, or an unknown variation in ``only``.
    """
    _check(image, masks)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}.")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A41]))
    if only is not None:
        unknown = [v for v in only if v not in VARIATIONS]
        if unknown:
            raise ValueError(f"Unknown variation {unknown[0]!r}; expected some of {', '.join(VARIATIONS)}.")
        chosen = set(only)
        rng.uniform(size=len(VARIATIONS) - len(_EXTRA))  # the same draws follow either way
    else:
        base = VARIATIONS[: -len(_EXTRA)]
        draws = rng.uniform(size=len(base))
        chosen = {v for v, u in zip(base, draws, strict=True) if u < _CHANCE[v]}
        extra = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A42])).uniform(size=len(_EXTRA))
        chosen |= {v for v, u in zip(_EXTRA, extra, strict=True) if u < _CHANCE[v]}
    if "macro_white" in chosen:  # one framing at a time: the new kinds take the place of the old
        chosen -= {"far", "macro", "half_face", "white_pupil"}
    elif "far" in chosen:
        chosen -= {"macro", "half_face"}
    border = BORDERS[int(rng.integers(0, len(BORDERS)))]
    applied: dict[str, Any] = {}
    # 0/255 uint8 whatever came in (bool or 0/1), so nearest-neighbour warps and resizes apply.
    current: dict[str, np.ndarray] = {k: np.where(np.asarray(v) > 0, 255, 0).astype(np.uint8)
                                      for k, v in masks.items()}
    f = _photometric_eye(rng, image, current, chosen, applied)
    if "lids" in chosen:
        _lids(rng, f, current, applied)
    img: np.ndarray = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    img, current = _geometry(rng, img, current, chosen, border, applied)
    if "text" in chosen:
        img = _text(rng, img, applied)
    if "far" in chosen or "macro_white" in chosen:
        # Their photographs' sizes are part of what they are: about 250-370 px and 240 px wide.
        width = applied["far"]["width"] if "far" in chosen else float(rng.uniform(220, 260))
        size = (max(8, round(width)), max(8, round(width * img.shape[0] / img.shape[1])))
        shrink = size[0] < img.shape[1]
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        current = {k: cv2.resize(v, size, interpolation=cv2.INTER_NEAREST) for k, v in current.items()}
    elif "small" in chosen:
        side = float(rng.uniform(90, 300))
        factor = min(1.0, side / max(img.shape[:2]))
        size = (max(8, round(img.shape[1] * factor)), max(8, round(img.shape[0] * factor)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        current = {k: cv2.resize(v, size, interpolation=cv2.INTER_NEAREST) for k, v in current.items()}
        applied["small"] = {"size": list(size)}
    if "jpeg" in chosen:
        quality = int(rng.integers(15, 80))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            img = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        applied["jpeg"] = {"quality": quality}
    return Varied(image=np.ascontiguousarray(img), masks=current, applied=applied)
