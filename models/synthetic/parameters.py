"""What the synthetic eye generator draws at random before any pixel: the patient, the scene and its geometry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GENERATOR_VERSION = "1.1"
CATARACT_TYPES = ("nuclear", "cortical", "posterior_subcapsular", "mature")
MASK_NAMES = ("pupil", "iris", "sclera", "skin")
LABELS = ("cataract", "normal")

_SKIN_TONES = np.array(
    [
        (246, 218, 200),
        (234, 192, 164),
        (216, 166, 130),
        (194, 140, 102),
        (164, 112, 78),
        (128, 84, 58),
        (94, 62, 44),
        (62, 42, 33),
    ],
    dtype=np.float32,
) / 255.0

# name: (pupillary zone, ciliary zone, light fibres, limbal ring, crypt floor, fibre contrast)
_IRIS_COLOURS: dict[str, tuple] = {
    "dark_brown": ((58, 36, 24), (68, 43, 28), (98, 66, 42), (28, 18, 13), (32, 20, 14), 0.18),
    "brown": ((92, 56, 30), (112, 72, 40), (158, 110, 66), (44, 28, 18), (56, 33, 19), 0.24),
    "hazel": ((132, 86, 40), (104, 106, 64), (170, 156, 100), (46, 44, 30), (70, 54, 30), 0.30),
    "green": ((142, 114, 58), (86, 114, 78), (150, 172, 122), (38, 52, 40), (58, 72, 50), 0.30),
    "blue": ((112, 122, 126), (88, 124, 166), (178, 200, 220), (36, 50, 76), (56, 76, 106), 0.42),
    "grey": ((120, 120, 112), (120, 130, 136), (188, 192, 194), (50, 56, 62), (76, 84, 92), 0.40),
}


@dataclass(frozen=True)
class SyntheticEye:
    """One rendered eye: the photograph, where each structure lies in it, and how it was made."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    meta: dict



@dataclass(frozen=True)
class _Patient:
    skin: np.ndarray  # RGB 0..1
    tone: float  # 0 very light .. 1 very dark
    iris_colour: str
    iris_tint: np.ndarray  # per-channel multiplier
    age: float  # 0 middle-aged .. 1 very old
    lash_colour: np.ndarray
    lash_density: float
    sclera: np.ndarray
    arcus: float  # 0 none .. 1 dense


def _draw_patient(rng: np.random.Generator) -> _Patient:
    tone = float(rng.beta(1.1, 1.3))
    pos = tone * (len(_SKIN_TONES) - 1)
    i = min(int(pos), len(_SKIN_TONES) - 2)
    f = pos - i
    skin = _SKIN_TONES[i] * (1 - f) + _SKIN_TONES[i + 1] * f
    # Undertone: some skins redder, some more olive.
    under = rng.uniform(-1, 1)
    skin = skin * np.array([1 + 0.03 * under, 1.0, 1 - 0.05 * under], np.float32)
    skin = np.clip(skin * rng.uniform(0.95, 1.05), 0, 1).astype(np.float32)
    if tone > 0.6:
        weights = {"dark_brown": 0.72, "brown": 0.26, "hazel": 0.02}
    elif tone > 0.3:
        weights = {"dark_brown": 0.3, "brown": 0.38, "hazel": 0.15, "green": 0.07, "blue": 0.06, "grey": 0.04}
    else:
        weights = {"dark_brown": 0.06, "brown": 0.2, "hazel": 0.17, "green": 0.12, "blue": 0.31, "grey": 0.14}
    names = list(weights)
    p = np.array([weights[k] for k in names])
    colour = names[int(rng.choice(len(names), p=p / p.sum()))]
    tint = (1 + rng.normal(0, 0.04, 3)).astype(np.float32) * rng.uniform(0.85, 1.15)
    age = float(rng.uniform(0, 1))
    grey_lash = rng.uniform() < 0.15 * age
    lash = np.array((26, 19, 15) if not grey_lash else (78, 72, 68), np.float32) / 255 * rng.uniform(0.8, 1.2)
    sclera = np.array((228, 220, 212), np.float32) / 255
    sclera = sclera * np.array([1.0, 1 - 0.02 * age, 1 - 0.06 * age * rng.uniform(0, 1)], np.float32)
    sclera = np.clip(sclera * rng.uniform(0.84, 1.0) + rng.normal(0, 0.012, 3), 0, 1).astype(np.float32)
    arcus = float(rng.uniform(0.3, 1.0)) if rng.uniform() < 0.35 * (0.3 + age) else 0.0
    return _Patient(skin, tone, colour, tint, age, lash.astype(np.float32), float(rng.uniform(0.6, 1.1)),
                    sclera, arcus)


@dataclass(frozen=True)
class _Scene:
    width: int
    height: int
    mirror: float  # +1: nasal side on the image's right (OD), -1: on the left (OS)
    theta: float  # in-plane rotation, radians
    cx: float  # output position of the palpebral fissure's centre
    cy: float
    R: float  # iris radius, px
    rp: float  # pupil radius, px
    A: float  # half width of the fissure, px
    gx: float  # iris centre in the canonical frame
    gy: float
    pdx: float  # pupil decentration from the iris centre, canonical
    pdy: float
    tilt: float  # canthal offset: nasal canthus lower by this much, px
    Hu: float
    Hl: float
    pu_n: float  # lid shape exponents, nasal and temporal halves
    pu_t: float
    pl_n: float
    pl_t: float
    bu: float
    bl: float
    crease: float  # crease height above the margin, px
    margin_lo: float  # lower lid margin thickness, px
    light: np.ndarray  # unit vector towards the light, canonical frame


def _rot(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]], np.float64)


def _to_image(scene: _Scene, u: np.ndarray | np.floating[Any] | float, v: np.ndarray | np.floating[Any] | float
              ) -> tuple[Any, Any]:
    """Canonical (nasal = +u, down = +v) coordinates to output pixel coordinates."""
    c, s = np.cos(scene.theta), np.sin(scene.theta)
    mu = scene.mirror * u
    return scene.cx + c * mu - s * v, scene.cy + s * mu + c * v


def _lid_profile(t: np.ndarray | np.floating[Any], p_n: float, p_t: float, b: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Lid height profile on [-1, 1] (peak 1 near 0, 0 at the canthi) and its derivative in t."""
    base = np.maximum(1.0 - t * t, 0.0)
    p = np.where(t > 0, np.float32(p_n), np.float32(p_t))
    q = np.power(base, p)
    skew = 1.0 + b * t
    dq = -2.0 * p * t * q / np.maximum(base, 1e-3)
    return q * skew, dq * skew + b * q


def _lids_at(scene: _Scene, u: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(u, np.float32) / scene.A
    qu, _ = _lid_profile(t, scene.pu_n, scene.pu_t, scene.bu)
    ql, _ = _lid_profile(t, scene.pl_n, scene.pl_t, scene.bl)
    line = scene.tilt * t
    return line - scene.Hu * qu, line + scene.Hl * ql


def _draw_scene(rng: np.random.Generator, width: int, height: int, mirror: float) -> _Scene:
    frame = min(width, height * 4.0 / 3.0)
    # Close-up framing, as for a slit-lamp or macro photograph of the lens: the iris spans half to
    # three quarters of the width, so the pupil covers several cells of a 7x7 or 8x8 Grad-CAM grid.
    R = frame * float(np.clip(rng.normal(0.30, 0.035), 0.25, 0.36))
    rp = R * (0.35 + 0.25 * float(rng.beta(1.6, 1.2)))  # most are dilated for the examination
    A = R * float(rng.uniform(1.95, 2.45))
    gx = A * float(rng.uniform(-0.12, 0.12))
    gy = R * float(rng.uniform(-0.1, 0.1))
    pdx = R * float(rng.uniform(0.0, 0.05))  # the pupil sits slightly nasal
    pdy = R * float(rng.uniform(-0.02, 0.04))
    tilt = R * float(rng.uniform(-0.02, 0.18))
    pu_n, pu_t = float(rng.uniform(0.55, 0.8)), float(rng.uniform(0.85, 1.2))
    pl_n, pl_t = float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.9, 1.3))
    bu, bl = float(rng.uniform(0.0, 0.25)), float(rng.uniform(-0.25, 0.0))
    ku = float(rng.uniform(0.62, 1.08))  # upper lid height over the iris centre, in iris radii
    kl = float(rng.uniform(0.88, 1.15))
    tg = gx / A
    line = tilt * tg
    qu = float(_lid_profile(np.float32(tg), pu_n, pu_t, bu)[0])
    ql = float(_lid_profile(np.float32(tg), pl_n, pl_t, bl)[0])
    Hu = (ku * R - gy + line) / qu
    Hl = (kl * R + gy - line) / ql
    theta = float(np.deg2rad(np.clip(rng.normal(0, 6), -15, 15)))
    # Frame the iris first so that it is always wholly in the picture.
    ix = width / 2 + width * float(rng.uniform(-0.12, 0.12))
    iy = height / 2 + height * float(rng.uniform(-0.1, 0.1))
    m = R + 3
    ix = float(np.clip(ix, m, width - 1 - m)) if width > 2 * m else width / 2
    iy = float(np.clip(iy, m, height - 1 - m)) if height > 2 * m else height / 2
    off = _rot(theta) @ np.array([mirror * gx, gy])
    crease = R * float(rng.uniform(0.25, 1.4))
    margin_lo = R * float(rng.uniform(0.09, 0.16))
    ang = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(ang), np.sin(ang)], np.float32)
    return _Scene(width, height, mirror, theta, ix - off[0], iy - off[1], R, rp, A, gx, gy, pdx, pdy, tilt,
                  Hu, Hl, pu_n, pu_t, pl_n, pl_t, bu, bl, crease, margin_lo, light)


# --------------------------------------------------------------------------------------------
# The iris, a texture drawn in polar coordinates and wrapped round the pupil.
