"""Synthetic close-up external eye photographs, with exact structure masks, for the demonstration model."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from components.files import atomic_write_bytes

GENERATOR_VERSION = "1.1"
CATARACT_TYPES = ("nuclear", "cortical", "posterior_subcapsular", "mature")
MASK_NAMES = ("pupil", "iris", "sclera", "skin")
LABELS = ("cataract", "normal")
EYES = ("OD", "OS")

_PLAN_STREAM = 0x91A7  # the dataset plan's random stream, apart from the images' seeds
_PATIENT_STREAM = 0x9A7E47  # keeps a patient's random stream apart from any image's of the same seed
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = float(1 << _SHIFT)

# Grade weights for the non-mature types, chosen so that with mature always grade 3 or 4 the
# grades of a type-balanced cataract set come out uniform over 1..4.
_GRADE_WEIGHTS = np.array([2, 2, 1, 1], dtype=np.float64) / 6.0

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


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres sit on integer coordinates, the convention OpenCV's drawing uses too.
    xs = np.arange(width, dtype=np.float32)[None, :].repeat(height, 0)
    ys = np.arange(height, dtype=np.float32)[:, None].repeat(width, 1)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.2:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Unit-variance-ish value noise whose features are about ``cell`` pixels across."""
    h, w = shape
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance white noise; uniform draws are five times cheaper than normal ones."""
    noise = rng.random(shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(np.sqrt(12.0))
    return noise


def _periodic_noise(rng: np.random.Generator, n: int, modes: int, decay: float = 1.0) -> np.ndarray:
    """A smooth random function sampled at ``n`` angles round a circle, roughly unit amplitude."""
    k = np.arange(1, modes + 1, dtype=np.float32)
    amp = rng.standard_normal(modes).astype(np.float32) / k**decay
    phase = rng.uniform(0, 2 * np.pi, modes).astype(np.float32)
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False, dtype=np.float32)
    out = (amp[:, None] * np.cos(k[:, None] * phi[None, :] + phase[:, None])).sum(0)
    return out / max(float(np.abs(out).max()), 1e-6)


# --------------------------------------------------------------------------------------------
# Parameters: the patient (shared by both eyes), the scene (one photograph), the lens opacity.
# --------------------------------------------------------------------------------------------


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


def _to_image(scene: _Scene, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (nasal = +u, down = +v) coordinates to output pixel coordinates."""
    c, s = np.cos(scene.theta), np.sin(scene.theta)
    mu = scene.mirror * u
    return scene.cx + c * mu - s * v, scene.cy + s * mu + c * v


def _lid_profile(t: np.ndarray, p_n: float, p_t: float, b: float) -> tuple[np.ndarray, np.ndarray]:
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
# --------------------------------------------------------------------------------------------


def _wrap_blur(img: np.ndarray, sigma_s: float, sigma_phi: float) -> np.ndarray:
    pad = int(3 * sigma_phi) + 2
    padded = np.concatenate([img[:, -pad:], img, img[:, :pad]], axis=1)
    out = cv2.GaussianBlur(padded, (0, 0), sigmaX=max(sigma_phi, 0.1), sigmaY=max(sigma_s, 0.1),
                           borderType=cv2.BORDER_REFLECT)
    return out[:, pad:-pad]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


def _wrapped_canvas(ns: int, nphi: int, pad: int) -> np.ndarray:
    return np.zeros((ns, nphi + 2 * pad), np.uint8)


def _fold(canvas: np.ndarray, pad: int) -> np.ndarray:
    """Fold a canvas drawn with ``pad`` spare columns each side back onto one turn of the circle."""
    core = canvas[:, pad:-pad].astype(np.float32)
    core[:, -pad:] = np.maximum(core[:, -pad:], canvas[:, :pad])
    core[:, :pad] = np.maximum(core[:, :pad], canvas[:, -pad:])
    return core * np.float32(1 / 255)


def _iris_polar(rng: np.random.Generator, patient: _Patient, ns: int, nphi: int, rp: float, R: float) -> np.ndarray:
    """Iris colours on a (ring position s: pupil margin 0 .. limbus 1, angle) grid.

    ``rp`` and ``R`` are the pupil and iris radii in output pixels, so features keep their size.
    The stroma is drawn as it looks: crypts (pits) first, then wavy radial fibres across them,
    then the collarette ridge and a few broken concentric furrows.
    """
    inner, outer, fibre_c, limbal, crypt_c, contrast = (
        np.array(x, np.float32) / 255 * patient.iris_tint if isinstance(x, tuple) else x
        for x in _IRIS_COLOURS[patient.iris_colour])
    s = np.linspace(0, 1, ns, dtype=np.float32)[:, None]
    per_px = ns / (R - rp)  # grid rows per output pixel along the radius
    pad = max(8, nphi // 40)
    collar = 0.22 + rng.uniform(-0.04, 0.1)
    collar_s = collar + 0.04 * _periodic_noise(rng, nphi, 48, 0.5)[None, :]

    pits = _wrapped_canvas(ns, nphi, pad)
    for _ in range(int(rng.integers(10, 40))):
        cs = ns * float(np.clip(collar + rng.normal(0.12, 0.18), 0.06, 0.9))
        cp = pad + rng.uniform(0, nphi)
        k = int(rng.integers(7, 12))
        ang = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1)
        rad = 1 + rng.uniform(-0.35, 0.35, k)
        a_phi = nphi * rng.uniform(0.002, 0.007)
        a_s = ns * rng.uniform(0.03, 0.1)
        pts = np.stack([cp + a_phi * rad * np.cos(ang), cs + a_s * rad * np.sin(ang)], -1)
        cv2.fillPoly(pits, [np.round(pts * _ONE).astype(np.int32)], int(rng.uniform(140, 255)), cv2.LINE_AA, _SHIFT)
    pits = _wrap_blur(_fold(pits, pad), 0.5 * per_px, 0.6)

    # Fibres: wavy strands, most from the collarette outwards, some inside it.
    fib = _wrapped_canvas(ns, nphi, pad)
    n_f = int(nphi * rng.uniform(0.25, 0.4))
    k = 8
    steps = np.linspace(0, 1, k)[None, :]
    inner_f = rng.uniform(size=n_f) < 0.3
    s0 = np.where(inner_f, rng.uniform(0.0, 0.05, n_f), collar + rng.uniform(-0.05, 0.1, n_f))
    s1 = np.where(inner_f, collar + rng.uniform(-0.02, 0.05, n_f), rng.uniform(0.55, 1.0, n_f))
    ss = s0[:, None] + (s1 - s0)[:, None] * steps
    wander = np.cumsum(rng.normal(0, 1.0, (n_f, k)), axis=1) * (nphi * 0.0012)
    sweep = rng.normal(0, nphi * 0.004, n_f)[:, None] * steps
    pp = pad + rng.uniform(0, nphi, n_f)[:, None] + wander + sweep
    pts = np.round(np.stack([pp, ss * (ns - 1)], -1) * _ONE).astype(np.int32)
    vals = rng.uniform(90, 255, n_f).astype(int)
    for level in (110, 170, 230):
        sel = (vals <= level) & (vals > level - 60) if level > 110 else vals <= level
        if sel.any():
            cv2.polylines(fib, list(pts[sel]), False, level, 1, cv2.LINE_AA, _SHIFT)
    fib = _wrap_blur(_fold(fib, pad), 0.4 * per_px, 0.4)
    fib_soft = _wrap_blur(fib, 2.0 * per_px, 1.5)

    furrows = _wrapped_canvas(ns, nphi, pad)
    for _ in range(int(rng.integers(0, 6))):
        sc = rng.uniform(0.62, 0.93)
        p0 = pad + rng.uniform(0, nphi)
        span = nphi * rng.uniform(0.04, 0.2)
        pp = p0 + np.linspace(0, span, 10)
        sv = (sc + np.cumsum(rng.normal(0, 0.006, 10))) * (ns - 1)
        cv2.polylines(furrows, [np.round(np.stack([pp, sv], -1) * _ONE).astype(np.int32)], False,
                      int(rng.uniform(120, 230)), max(1, round(1.2 * per_px)), cv2.LINE_AA, _SHIFT)
    furrows = _wrap_blur(_fold(furrows, pad), 0.6 * per_px, 1.0)

    mott = _unit(cv2.resize(rng.standard_normal((max(2, ns // 5), max(8, nphi // 10)), dtype=np.float32),
                            (nphi, ns), interpolation=cv2.INTER_CUBIC))
    grain = _unit(_wrap_blur(_white(rng, (ns, nphi)), 1.5 * per_px, 0.8))
    zone = _smoothstep(-0.03, 0.1, s - collar_s)
    ridge = np.exp(-(((s - collar_s) / 0.03) ** 2))
    # Between fibres the stroma is darker; the fibres and the collarette stand out lighter.
    lum = 1 + contrast * (0.35 * mott + 0.25 * grain - 0.9 * (0.35 - fib_soft) + 0.5 * ridge)
    lum *= 1 - 0.3 * furrows
    # The texture is a stack of layers, each a flat colour over what lies below with some coverage;
    # the weight of each colour is its coverage times what the layers above leave uncovered.
    layers = [(fibre_c, np.clip(contrast * 1.6 * fib + 0.5 * contrast * ridge, 0, 0.7)),
              (crypt_c, np.clip(pits * (1 - 0.6 * fib), 0, 0.9))]
    if patient.iris_colour in ("blue", "grey", "green", "hazel") and rng.uniform() < 0.35:
        spots = _wrapped_canvas(ns, nphi, pad)
        for _ in range(int(rng.integers(1, 5))):
            frac = rng.uniform(0.35, 0.9)
            cs, cp = ns * frac, pad + rng.uniform(0, nphi)
            rad = R * rng.uniform(0.015, 0.04)
            cols_per_px = nphi / (2 * np.pi * (rp + frac * (R - rp)))
            axes = (int(rad * cols_per_px * _ONE), int(rad * per_px * _ONE))
            cv2.ellipse(spots, (int(cp * _ONE), int(cs * _ONE)), axes, 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
        spots = _wrap_blur(_fold(spots, pad), 0.6 * per_px, 0.6)
        layers.append((np.array((92, 56, 30), np.float32) / 255, 0.75 * spots))
    layers.append((limbal, np.broadcast_to(_smoothstep(0.72, 1.0, s) * rng.uniform(0.35, 0.7), (ns, nphi))))
    ruff_s = (0.8 + 1.6 * np.abs(_periodic_noise(rng, nphi, 70, 0.2))[None, :]) * per_px / ns
    layers.append((np.array((34, 22, 17), np.float32) / 255, 1 - _smoothstep(ruff_s * 0.6, ruff_s * 1.4, s)))
    weights, colours = [], []
    keep = np.ones((ns, nphi), np.float32)
    for colour, cover in reversed(layers):
        weights.append(cover * keep)
        colours.append(colour)
        keep = keep * (1 - cover)
    keep *= lum
    weights += [keep * (1 - zone), keep * zone]
    colours += [inner, outer]
    col = np.stack(weights, -1).reshape(-1, len(weights)) @ np.stack(colours)
    col = col.reshape(ns, nphi, 3)
    return np.clip(col, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Lens opacities, seen through the pupil.
# --------------------------------------------------------------------------------------------


def _opacity(rng: np.random.Generator, kind: str, grade: int, du: np.ndarray, dv: np.ndarray, rp: float,
             light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour (h, w, 3) and coverage (h, w) of the lens opacity, in pupil-relative canonical coords."""
    rho = np.sqrt(du * du + dv * dv) / np.float32(rp)
    phi = np.arctan2(dv, du)
    g = grade
    cell = max(3.0, rp * 0.3)
    if kind == "nuclear":
        strength = (0.0, 0.32, 0.46, 0.6, 0.74)[g] * rng.uniform(0.92, 1.08)
        sigma = rng.uniform(0.5, 0.75)
        alpha = strength * (0.5 + 0.5 * np.exp(-((rho / sigma) ** 2))) * (1 + 0.1 * _smooth_noise(rng, rho.shape, cell))
        cols = {1: (182, 166, 130), 2: (194, 162, 108), 3: (182, 130, 70), 4: (152, 96, 48)}
        colour = np.array(cols[g], np.float32) / 255 * rng.uniform(0.92, 1.08)
        glow = 1 + 0.15 * np.exp(-((rho / 0.35) ** 2))
        col = colour[None, None] * glow[..., None]
    elif kind == "cortical":
        n = int(rng.integers(*{1: (3, 6), 2: (4, 8), 3: (6, 10), 4: (9, 14)}[g]))
        length = {1: (0.3, 0.45), 2: (0.38, 0.6), 3: (0.5, 0.75), 4: (0.65, 0.95)}[g]
        alpha = np.zeros_like(rho)
        # Spokes favour the lower nasal quadrant (canonical: +u nasal, +v down).
        centres = np.where(rng.uniform(size=n) < 0.5, rng.normal(np.pi / 4, 0.7, n), rng.uniform(-np.pi, np.pi, n))
        feather = _smooth_noise(rng, rho.shape, max(2.0, rp * 0.08))
        for c in centres:
            L = rng.uniform(*length)
            tip = 1 - L
            half = rng.uniform(0.14, 0.3) * (0.8 + 0.2 * g / 4)
            bend = rng.normal(0, 0.25)
            d = phi - np.float32(c) - np.float32(bend) * (1 - rho)
            d = (d + np.float32(np.pi)) % np.float32(2 * np.pi) - np.float32(np.pi)  # wrapped to [-pi, pi)
            along = np.clip((rho - tip) / L, 0, 1)
            width = half * (0.1 + 0.9 * along ** 0.8)
            edge = np.abs(d) / np.maximum(width, 1e-3) + 0.18 * feather
            wedge = _smoothstep(1.0, 0.35, edge) * _smoothstep(tip - 0.02, tip + 0.15, rho)
            alpha = np.maximum(alpha, wedge * rng.uniform(0.7, 0.92))
        freq = rng.uniform(50, 90)
        stri = 0.8 + 0.2 * np.sin(phi * freq + 3 * np.sin(phi * 7)) * np.sin(phi * freq * 0.37 + 1.0)
        haze = (0.0, 0.05, 0.08, 0.16, 0.28)[g] * (0.6 + 0.4 * rho)
        alpha = np.maximum(alpha * stri, haze)
        col = np.array((222, 222, 214), np.float32) / 255 * rng.uniform(0.94, 1.04) \
            * (1 + 0.05 * feather[..., None])
    elif kind == "posterior_subcapsular":
        size = rng.uniform(*{1: (0.34, 0.42), 2: (0.38, 0.48), 3: (0.44, 0.56), 4: (0.52, 0.68)}[g])
        edge = size * (1 + 0.15 * np.interp(phi, np.linspace(-np.pi, np.pi, 256),
                                              _periodic_noise(rng, 256, 7, 0.8)).astype(np.float32))
        ox, oy = rng.normal(0, 0.06, 2)
        rho_c = np.sqrt((du / rp - ox) ** 2 + (dv / rp - oy) ** 2)
        plaque = _smoothstep(1.2, 0.45, rho_c / edge)
        grain = _unit(_blur(rng.standard_normal(rho.shape, dtype=np.float32), max(0.7, rp * 0.03)))
        strength = (0.0, 0.6, 0.66, 0.74, 0.84)[g]
        alpha = plaque * strength * np.clip(0.85 + 0.12 * grain, 0, 1.2)
        alpha = np.maximum(alpha, 0.12 * _smoothstep(2.0, 1.0, rho_c / edge) * (g / 4))
        col = np.array((216, 206, 176), np.float32) / 255 * (1 + 0.08 * np.clip(grain, -2, 2)[..., None])
    elif kind == "mature":
        strength = rng.uniform(0.86, 0.92) if g == 3 else rng.uniform(0.92, 0.97)
        base = np.array((190, 188, 176) if g == 3 else (226, 223, 210), np.float32) / 255 * rng.uniform(0.95, 1.05)
        mott = _smooth_noise(rng, rho.shape, max(3.0, rp * 0.18))
        freq = rng.uniform(18, 36)
        stri = np.sin(phi * freq + 2 * np.sin(phi * 5)) * _smoothstep(0.35, 0.95, rho)
        shade = 1 + 0.05 * mott + 0.05 * stri - 0.08 * _smoothstep(0.6, 1.0, rho)
        col = base[None, None] * shade[..., None]
        yellow = np.exp(-((rho / 0.5) ** 2)) * rng.uniform(0.0, 0.6)
        col = col * (1 - 0.15 * yellow[..., None] * np.array([0.0, 0.35, 1.0], np.float32))
        alpha = np.full_like(rho, strength)
    else:
        raise ValueError(f"unknown cataract type {kind!r}; expected one of {', '.join(CATARACT_TYPES)}")
    # The lens lies behind the iris plane, so the pupil margin throws a crescent of shadow onto it.
    lx, ly = float(light[0]), float(light[1])
    shadow = _smoothstep(0.7, 1.0, rho) * np.clip((du * lx + dv * ly) / (rp * rho + 1e-3), 0, 1)
    alpha = np.clip(alpha, 0, 1) * (1 - 0.4 * shadow)
    return np.clip(col, 0, 1).astype(np.float32), alpha.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Strokes drawn with OpenCV: lashes, vessels, wrinkles, reflections.
# --------------------------------------------------------------------------------------------



def _poly(scene: _Scene, points_u: np.ndarray, points_v: np.ndarray) -> np.ndarray:
    x, y = _to_image(scene, points_u, points_v)
    return np.round(np.stack([x, y], -1) * _ONE).astype(np.int32)


def _strokes(canvas: np.ndarray, pts: np.ndarray, widths: Sequence[int], values: Sequence[int]) -> None:
    """Draw many strokes (n, k, 2) in pieces that thin and fade towards their tips."""
    k = pts.shape[1]
    pieces = len(widths)
    cuts = np.linspace(0, k - 1, pieces + 1).round().astype(int)
    for i in range(pieces):
        part = pts[:, cuts[i]:cuts[i + 1] + 1]
        cv2.polylines(canvas, list(part), False, int(values[i]), int(widths[i]), cv2.LINE_AA, _SHIFT)


def _lashes(rng: np.random.Generator, scene: _Scene, patient: _Patient, canvas: np.ndarray) -> None:
    """Upper and lower lashes: thin strokes that fan out from the lid and curl away from the eye."""
    R, A = scene.R, scene.A
    px = R / 130.0  # stroke widths were tuned at an iris radius of 130 px
    s = np.linspace(0, 1, 10)[None, :]
    for upper in (True, False):
        n = int((rng.uniform(110, 170) if upper else rng.uniform(35, 70)) * patient.lash_density)
        t = rng.uniform(-0.98, 0.9, n * 3)
        dens = _smoothstep(0.9, 0.4, t) * _smoothstep(-1.0, -0.8, t)
        t = t[rng.uniform(size=t.size) < dens][:n]
        n = t.size
        # Neighbouring lashes lean together, which clumps them a little.
        k1, k2, p1, p2 = rng.uniform(8, 16), rng.uniform(20, 40), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
        lean = 0.12 * np.sin(k1 * t + p1) + 0.08 * np.sin(k2 * t + p2)
        yu, yl = _lids_at(scene, t * A)
        if upper:
            length = R * rng.uniform(0.32, 0.68, n) * (1 - 0.5 * t**2)
            lat = 0.9 * t + lean + rng.normal(0, 0.07, n)
            drop = rng.uniform(0.0, 0.3, n)  # lashes leave the lid towards the camera, dipping first
            curl = rng.uniform(0.7, 1.3, n)
            v0 = yu + rng.uniform(-0.02, 0.015, n) * R
            pv = v0[:, None] + length[:, None] * (drop[:, None] * s - curl[:, None] * s * s)
            widths, values = (max(1, round(2.2 * px)), max(1, round(1.4 * px)), 1), (255, 235, 140)
        else:
            length = R * rng.uniform(0.1, 0.28, n) * (1 - 0.6 * t**2)
            lat = 0.75 * t + lean + rng.normal(0, 0.12, n)
            drop = rng.uniform(0.55, 1.0, n)
            curl = rng.uniform(-0.1, 0.35, n)
            m_lo = scene.margin_lo * (0.35 + 0.65 * np.sqrt(np.maximum(1 - t**2, 0)))
            v0 = yl + m_lo * rng.uniform(0.8, 1.05, n)
            pv = v0[:, None] + length[:, None] * (drop[:, None] * s + curl[:, None] * s * s)
            widths, values = (max(1, round(1.2 * px)), 1, 1), (190, 160, 90)
        pu = (t * A)[:, None] + (length * lat)[:, None] * s ** 1.3
        _strokes(canvas, _poly(scene, pu, pv), widths, values)


def _walks(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, heading: np.ndarray, steps: int, step: float,
           wobble: float) -> np.ndarray:
    """Smoothly turning paths, (n, steps + 1, 2): each turn rate is noise that forgets itself quickly."""
    noise = rng.normal(0, wobble, (u.size, steps))
    turn = noise.copy()
    for lag in range(1, 8):
        turn[:, lag:] += 0.8**lag * noise[:, :-lag]
    ang = heading[:, None] + np.cumsum(turn, axis=1)
    pts = np.empty((u.size, steps + 1, 2))
    pts[:, 0, 0], pts[:, 0, 1] = u, v
    pts[:, 1:, 0] = u[:, None] + np.cumsum(step * np.cos(ang), axis=1)
    pts[:, 1:, 1] = v[:, None] + np.cumsum(step * np.sin(ang), axis=1)
    return pts


def _vessels(rng: np.random.Generator, scene: _Scene, canvas: np.ndarray, redness: float) -> None:
    """Conjunctival vessels: gently winding, branching paths from under the lids towards the limbus."""
    R, A = scene.R, scene.A
    step = R * 0.04
    n = int(rng.integers(8, 16) + 22 * redness)
    u = A * rng.uniform(0.25, 1.0, n) * np.where(rng.uniform(size=n) < 0.55, 1.0, -1.0)
    yu, yl = (z.astype(np.float64) for z in _lids_at(scene, u))
    # Most start under a lid and run out from the fornix; near the canthi they start in the open.
    v = np.where(rng.uniform(size=n) < 0.5, yu - R * rng.uniform(0, 0.1, n), yl + R * rng.uniform(0, 0.1, n))
    v = np.where(np.abs(u) > 0.85 * A, yu + (yl - yu) * rng.uniform(size=n), v)
    heading = np.arctan2(scene.gy - v, scene.gx - u) + rng.normal(0, 0.45, n)
    pts = _walks(rng, u, v, heading, 40, step, 0.06)
    # Each stops at its own length or where it fades out before the limbus.
    near = np.hypot(pts[..., 0] - scene.gx, pts[..., 1] - scene.gy) < R * rng.uniform(1.08, 1.3, n)[:, None]
    length = np.minimum(rng.integers(10, 40, n), np.where(near.any(1), near.argmax(1), 40)) + 1
    length = np.maximum(length, 3)
    value = rng.uniform(90, 230, n)
    wide = (rng.uniform(size=n) < 0.3) & (R > 100)
    xy = _poly(scene, pts[..., 0], pts[..., 1])
    # Thinner and paler towards their ends; values are grouped so that OpenCV draws each group at once.
    groups: dict[tuple[int, int], list[np.ndarray]] = {}
    for k in range(n):
        cut = np.linspace(0, length[k] - 1, 4).round().astype(int)
        for part, (w, f) in enumerate(((2 if wide[k] else 1, 1.0), (1, 0.75), (1, 0.45))):
            seg = xy[k, cut[part]:cut[part + 1] + 1]
            if len(seg) > 1:
                groups.setdefault((w, int(value[k] * f) // 16 * 16), []).append(seg)
    nb = int(rng.integers(0, 3 * n + 1))
    parent = rng.integers(0, n, nb)
    at = (rng.uniform(size=nb) * (length[parent] - 1)).astype(int)
    bh = heading[parent] + np.where(rng.uniform(size=nb) < 0.5, -1, 1) * rng.uniform(0.4, 1.2, nb)
    branches = _walks(rng, pts[parent, at, 0], pts[parent, at, 1], bh, 11, step * 0.7, 0.04)
    blen = rng.integers(4, 13, nb)
    bxy = _poly(scene, branches[..., 0], branches[..., 1])
    for k in range(nb):
        groups.setdefault((1, int(value[parent[k]] * 0.5) // 16 * 16), []).append(bxy[k, :blen[k]])
    for (w, val), segs in groups.items():
        cv2.polylines(canvas, segs, False, val, w, cv2.LINE_AA, _SHIFT)


def _wrinkles(rng: np.random.Generator, scene: _Scene, patient: _Patient, canvas: np.ndarray) -> None:
    """Crow's feet from the outer canthus and fine lines under the lower lid."""
    R, A = scene.R, scene.A
    for _ in range(int(3 + 14 * patient.age * rng.uniform(0.5, 1))):
        if rng.uniform() < 0.4:
            a0 = np.pi + rng.normal(0, 0.5)
            r0 = R * rng.uniform(0.15, 0.6)
            rr = r0 + R * np.linspace(0, rng.uniform(0.3, 0.9), 6)
            aa = a0 + np.linspace(0, rng.normal(0, 0.25), 6)
            pu, pv = -A + rr * np.cos(aa), -scene.tilt + rr * np.sin(aa)
        else:
            tt = np.linspace(*sorted(rng.uniform(-1.0, 0.8, 2)), 7)
            _, ylw = _lids_at(scene, tt * A)
            pu = tt * A
            pv = ylw + scene.margin_lo + R * rng.uniform(0.15, 0.9) + R * 0.025 * rng.normal(size=7)
        cv2.polylines(canvas, [_poly(scene, pu, pv)], False, int(rng.uniform(80, 255)), 1, cv2.LINE_AA, _SHIFT)


def _highlights(rng: np.random.Generator, scene: _Scene, canvas: np.ndarray) -> None:
    """Corneal reflections: the flash, a window or a ring light near the apex, and a few stray spots."""
    R = scene.R
    lu, lv = float(scene.light[0]), float(scene.light[1])
    dist = R * rng.uniform(0.0, 0.5)
    hu, hv = scene.gx + lu * dist, scene.gy + lv * dist
    x, y = (float(z) for z in _to_image(scene, np.float32(hu), np.float32(hv)))
    kind = rng.uniform()
    if kind < 0.45:
        r = R * rng.uniform(0.025, 0.06)
        axes = (int(r * _ONE), int(r * rng.uniform(0.6, 1.0) * _ONE))
        cv2.ellipse(canvas, (int(x * _ONE), int(y * _ONE)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1,
                    cv2.LINE_AA, _SHIFT)
    elif kind < 0.9:
        # A window: panes of a frame, bowed by the cornea's curvature.
        w, h = R * rng.uniform(0.08, 0.2), R * rng.uniform(0.06, 0.15)
        panes = int(rng.integers(1, 3))
        gap = 0.15 * min(w, h)
        for i in range(panes):
            for j in range(panes):
                u0 = hu - w / 2 + i * w / panes + gap / 2
                v0 = hv - h / 2 + j * h / panes + gap / 2
                uu = np.linspace(u0, u0 + w / panes - gap, 4)
                vv = np.linspace(v0, v0 + h / panes - gap, 4)
                ring_u = np.concatenate([uu, np.full(4, uu[-1]), uu[::-1], np.full(4, uu[0])])
                ring_v = np.concatenate([np.full(4, vv[0]), vv, np.full(4, vv[-1]), vv[::-1]])
                du, dv = ring_u - scene.gx, ring_v - scene.gy
                k = 1 - 0.12 * (du * du + dv * dv) / (R * R)
                pts = _poly(scene, scene.gx + du * k, scene.gy + dv * k)
                cv2.fillPoly(canvas, [pts], int(rng.uniform(215, 255)), cv2.LINE_AA, _SHIFT)
    else:
        rr = R * rng.uniform(0.07, 0.18)
        if rng.uniform() < 0.5:
            cv2.circle(canvas, (int(x * _ONE), int(y * _ONE)), int(rr * _ONE), 235, max(1, round(R * 0.014)),
                       cv2.LINE_AA, _SHIFT)
        else:
            a = np.linspace(0, 2 * np.pi, int(rng.integers(8, 20)), endpoint=False)
            for xx, yy in zip(x + rr * np.cos(a), y + rr * np.sin(a), strict=True):
                cv2.circle(canvas, (int(xx * _ONE), int(yy * _ONE)), int(max(0.8, R * 0.01) * _ONE), 240, -1,
                           cv2.LINE_AA, _SHIFT)
    for _ in range(int(rng.integers(0, 3))):
        ang = rng.uniform(0, 2 * np.pi)
        d = R * rng.uniform(0.1, 0.75)
        sx, sy = _to_image(scene, np.float32(scene.gx + d * np.cos(ang)), np.float32(scene.gy + d * np.sin(ang)))
        r = R * rng.uniform(0.01, 0.03)
        cv2.circle(canvas, (int(sx * _ONE), int(sy * _ONE)), max(1, int(r * _ONE)), int(rng.uniform(140, 255)), -1,
                   cv2.LINE_AA, _SHIFT)


# --------------------------------------------------------------------------------------------
# Composing the photograph.
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _coarse_grid(width: int, height: int, factor: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution coordinates of the cell centres of a grid ``factor`` times coarser, as cv2.resize maps them."""
    w, h = -(-width // factor), -(-height // factor)
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * (width / w) - 0.5)[None, :].repeat(h, 0)
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * (height / h) - 0.5)[:, None].repeat(w, 1)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _up(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass
class _Fissure:
    """Canonical coordinates and lid-margin distances on one grid."""

    u: np.ndarray
    v: np.ndarray
    t: np.ndarray  # u over the fissure's half width: the canthi are at +-1
    line: np.ndarray  # the line joining the canthi
    d_up: np.ndarray  # signed distance to the upper margin, >0 below it (px)
    d_lo: np.ndarray  # signed distance to the lower margin, >0 below it (px)
    inside: np.ndarray  # 1 between the canthi, fading to 0 just past them
    m_lo: np.ndarray  # thickness of the lower lid margin (px)


def _fissure(scene: _Scene, xs: np.ndarray, ys: np.ndarray) -> _Fissure:
    A = scene.A
    c, s = np.float32(np.cos(scene.theta)), np.float32(np.sin(scene.theta))
    dx, dy = xs - np.float32(scene.cx), ys - np.float32(scene.cy)
    u = np.float32(scene.mirror) * (c * dx + s * dy)
    v = -s * dx + c * dy
    t = u * np.float32(1 / A)
    at = np.abs(t)
    qu, dqu = _lid_profile(t, scene.pu_n, scene.pu_t, scene.bu)
    ql, dql = _lid_profile(t, scene.pl_n, scene.pl_t, scene.bl)
    line = np.float32(scene.tilt) * t
    slope_u = (scene.tilt - scene.Hu * dqu) / A
    slope_l = (scene.tilt + scene.Hl * dql) / A
    beyond = 2 * A * np.maximum(at - 1, 0)  # keeps the fissure shut past the canthi
    d_up = (v - line + np.float32(scene.Hu) * qu) / np.sqrt(1 + np.minimum(slope_u * slope_u, 400)) - beyond
    d_lo = (v - line - np.float32(scene.Hl) * ql) / np.sqrt(1 + np.minimum(slope_l * slope_l, 400)) + beyond
    inside = _smoothstep(1.03, 0.96, at)
    m_lo = np.float32(scene.margin_lo) * (0.35 + 0.65 * np.sqrt(np.maximum(1 - t * t, 0))) * inside
    return _Fissure(u, v, t, line, d_up, d_lo, inside, m_lo)


def _smooth_fields(scene: _Scene, patient: _Patient, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything that varies slowly: skin and globe colour at quarter resolution, lid edges at half.

    Returns, at half resolution, (d_up, d_lo) stacked and the skin colour; at quarter resolution,
    (car_a, lid_sh) stacked and the globe colour. d_up and d_lo are signed distances in pixels to
    the upper and lower lid margins (the fissure is where d_up > 0 > d_lo); interpolating them
    keeps the fissure's edge sharp at full resolution.
    """
    W, H, R, A = scene.width, scene.height, scene.R, scene.A
    q = _fissure(scene, *_coarse_grid(W, H, 4))
    u, v, t, line, d_up, d_lo, m_lo = q.u, q.v, q.t, q.line, q.d_up, q.d_lo, q.m_lo
    d_ls = d_lo - m_lo  # >0 on the lower lid's skin

    # ---- skin: the bulges of the lids, the hollows at the canthi, colour round the eye ----
    tc = t / 1.15
    qc = np.power(np.maximum(1 - tc * tc, 0), 0.8)
    k1, k2, p1, p2 = rng.uniform(2, 5), rng.uniform(6, 11), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
    crease_h = scene.Hu + scene.crease
    d_c = v - (line - crease_h * qc + R * 0.04 * (np.sin(k1 * tc + p1) + 0.5 * np.sin(k2 * tc + p2)))
    shade = 1 + rng.uniform(0.03, 0.1) * np.exp(-(((d_c + 0.5 * R) / (0.45 * R)) ** 2))
    shade += rng.uniform(-0.08, 0.08) * _smoothstep(-0.5 * R, -2.5 * R, d_c)
    shade += rng.uniform(0.02, 0.08) * np.exp(-(((d_ls - 0.3 * R) / (0.25 * R)) ** 2))
    trough = R * rng.uniform(0.6, 1.1)
    shade -= rng.uniform(0.04, 0.12) * np.exp(-(((d_ls - trough) / (0.25 * R)) ** 2)) * _smoothstep(1.4, 0.3, np.abs(t))
    shade -= rng.uniform(0.1, 0.22) * np.exp(-(((u - A) / (0.5 * R)) ** 2 + ((v - scene.tilt) / (0.8 * R)) ** 2))
    shade -= rng.uniform(0.03, 0.1) * np.exp(-(((u + A) / (0.5 * R)) ** 2 + ((v + scene.tilt) / (0.6 * R)) ** 2))
    shade *= 1 + 0.02 * _smooth_noise(rng, u.shape, R * 0.1)
    hue = _smooth_noise(rng, u.shape, R * 0.15)
    # max(-d_up, d_ls) is roughly the distance out from the fissure, and is continuous past the canthi.
    out_dist = np.maximum(np.maximum(-d_up, d_ls), 0)
    red = np.exp(-out_dist / (0.32 * R)) * rng.uniform(0.25, 0.6) + 0.06 * hue
    peri = np.exp(-out_dist / (0.9 * R)) * (0.6 + 0.4 * _smoothstep(-R, R, v - line))
    peri = peri * (0.06 + 0.22 * patient.tone) * rng.uniform(0.3, 1)
    sheen = rng.uniform(0.0, 0.05 + 0.08 * patient.tone) * (
        np.exp(-(((d_c + 0.45 * R) / (0.35 * R)) ** 2)) + 0.6 * np.exp(-(((d_ls - 0.25 * R) / (0.2 * R)) ** 2)))
    skin_q = patient.skin[None, None] * (shade * (1 - peri))[..., None]
    skin_q *= 1 - red[..., None] * np.array([0.0, 0.13, 0.12], np.float32)
    skin_q += sheen[..., None]

    # ---- globe: sclera shading, redness towards the canthi, the caruncle and plica ----
    gu, gv = u - np.float32(scene.gx), v - np.float32(scene.gy)
    sphere = 1 - 0.34 * (gu / A) ** 2 - 0.08 * (gv / R) ** 2
    globe = patient.sclera[None, None] * (sphere * (1 + 0.025 * _smooth_noise(rng, u.shape, R * 0.04)))[..., None]
    inj = float(rng.uniform(0.15, 0.55))
    toward = np.exp(-(A - np.abs(u)) / (0.3 * A)) * inj
    globe += (np.array((0.84, 0.55, 0.52), np.float32) - globe) * toward[..., None]
    if rng.uniform() < 0.25 + 0.3 * patient.age:
        pg_u = scene.gx + (1 if rng.uniform() < 0.7 else -1) * R * rng.uniform(1.25, 1.5)
        pg = np.exp(-(((u - pg_u) / (0.2 * R)) ** 2 + (gv / (0.12 * R)) ** 2))
        globe += (np.array((0.84, 0.78, 0.6), np.float32) - globe) * (0.45 * pg)[..., None]
    ru, rv = R * rng.uniform(0.3, 0.45), R * rng.uniform(0.45, 0.65)
    e = ((u - A) / ru) ** 2 + ((v - scene.tilt) / rv) ** 2
    car_a = _smoothstep(1.0, 0.72, e)
    car_col = np.array((0.8, 0.53, 0.5), np.float32) * rng.uniform(0.88, 1.05)
    car_col = car_col * (0.72 + 0.28 * np.clip(e, 0, 1) + 0.1 * _smooth_noise(rng, u.shape, R * 0.02))[..., None]
    plica = _smoothstep(0.95, 1.3, e) * _smoothstep(2.3, 1.5, e) * rng.uniform(0.2, 0.45)
    globe += (np.array((0.84, 0.6, 0.58), np.float32) - globe) * plica[..., None]
    globe += (car_col - globe) * car_a[..., None]
    lid_sh = 1 - rng.uniform(0.25, 0.5) * np.exp(-np.maximum(d_up, 0) / (0.13 * R)) \
        - rng.uniform(0.05, 0.15) * np.exp(np.minimum(d_lo, 0) / (0.08 * R))
    globe *= lid_sh[..., None]

    # ---- half resolution: the crease and its fold, the lash line, the lower lid's moist rim ----
    h = _fissure(scene, *_coarse_grid(W, H, 2))
    d_up, d_lo, m_lo, inside = h.d_up, h.d_lo, h.m_lo, h.inside
    tc = h.t / 1.15
    qc = np.power(np.maximum(1 - tc * tc, 0), 0.8)
    d_c = h.v - (h.line - crease_h * qc + R * 0.04 * (np.sin(k1 * tc + p1) + 0.5 * np.sin(k2 * tc + p2)))
    fade_c = _smoothstep(0.95, 0.45, np.abs(tc))
    fold = rng.uniform(0.05, 0.18) * np.exp(-np.maximum(d_c, 0) / (0.22 * R)) * (d_c > 0) * (d_up < 0) * inside
    # The crease comes and goes along its length rather than being drawn as one even line.
    along = 0.6 + 0.4 * np.sin(rng.uniform(3, 7) * tc + rng.uniform(0, 6.3))
    mul = 1 - fade_c * (fold + rng.uniform(0.05, 0.15) * along * np.exp(-((d_c / (0.04 * R + 1)) ** 2)))
    if rng.uniform() < 0.3:
        mul -= rng.uniform(0.03, 0.08) * np.exp(-(((d_c + R * rng.uniform(0.12, 0.25)) / (0.03 * R + 1)) ** 2)) * fade_c
    mul *= 1 - 0.55 * np.exp(-((d_up / (0.035 * R)) ** 2)) * inside
    skin = _up(skin_q, *d_up.shape[::-1]) * mul[..., None]
    rim = _smoothstep(-1.5, 1.5, d_lo) * _smoothstep(1.5, -1.5, d_lo - m_lo) * inside
    depth = np.clip(d_lo / np.maximum(m_lo, 1), 0, 1)
    rim_col = np.array((0.78, 0.5, 0.47), np.float32) * (0.8 + 0.25 * float(patient.skin.mean()))
    rim_col = rim_col + (skin * 0.85 - rim_col) * (0.6 * depth * depth)[..., None]
    skin += (rim_col - skin) * (0.85 * rim)[..., None]
    meniscus = np.exp(-(((d_lo - 0.12 * m_lo) / (0.08 * m_lo + 1)) ** 2)) * inside
    skin += (rng.uniform(0.15, 0.4) * meniscus)[..., None]
    return np.stack([d_up, d_lo], -1), skin, np.stack([car_a, lid_sh], -1), globe


def _box(cx: float, cy: float, half: float, width: int, height: int) -> tuple[slice, slice]:
    return (slice(max(0, int(cy - half)), min(height, int(cy + half) + 2)),
            slice(max(0, int(cx - half)), min(width, int(cx + half) + 2)))


def _within(outer: tuple[slice, slice], inner: tuple[slice, slice]) -> tuple[slice, slice]:
    """``inner`` (image coordinates) as slices of an array that covers ``outer``."""
    return (slice(inner[0].start - outer[0].start, inner[0].stop - outer[0].start),
            slice(inner[1].start - outer[1].start, inner[1].stop - outer[1].start))


def _up_box(coarse: np.ndarray, width: int, height: int, box: tuple[slice, slice]) -> np.ndarray:
    """Bilinear upsampling of a coarse grid to full resolution, only inside ``box``; same centres as cv2.resize."""
    h, w = coarse.shape[:2]
    sx, sy = w / width, h / height
    m = np.array([[sx, 0, sx * (box[1].start + 0.5) - 0.5], [0, sy, sy * (box[0].start + 0.5) - 0.5]], np.float64)
    size = (box[1].stop - box[1].start, box[0].stop - box[0].start)
    return cv2.warpAffine(coarse, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _skin_layer(rng: np.random.Generator, scene: _Scene, patient: _Patient, skin_c: np.ndarray) -> np.ndarray:
    """Full-resolution skin: the smooth colour with pores, fine creases along the lids and wrinkles."""
    W, H = scene.width, scene.height
    fine = max(1.0, scene.R / 130.0)
    wr = np.zeros((H, W), np.uint8)
    _wrinkles(rng, scene, patient, wr)
    # Texture drawn at half resolution; upsampling blurs it to the size of pores.
    grain = _white(rng, skin_c.shape[:2])
    creases = cv2.GaussianBlur(grain, (0, 0), sigmaX=2.5 * fine, sigmaY=0.45 * fine, borderType=cv2.BORDER_REFLECT)
    detail = _up(1 + (0.012 + 0.01 * patient.tone) * grain + (0.05 + 0.06 * patient.age) * creases, W, H)
    detail -= (0.06 + 0.1 * patient.age) / 255 * _blur(wr.astype(np.float32), 0.8 * fine)
    skin = _up(skin_c, W, H)
    skin *= detail[..., None]
    return skin


def _iris_layer(rng: np.random.Generator, scene: _Scene, patient: _Patient, bx: np.ndarray, by: np.ndarray,
                r: np.ndarray, pupil_offset: tuple[float, float]) -> np.ndarray:
    """The iris's colours at pixel offsets (bx, by) from its centre (r = their length)."""
    R, rp = scene.R, scene.rp
    phi = np.arctan2(by, bx)
    # The pupil is a little off the iris's centre; s runs 0..1 from its margin to the limbus.
    rho_p = rp + (pupil_offset[0] * bx + pupil_offset[1] * by) / np.maximum(r, 1e-3)
    ring_s = (r - rho_p) / (R - rho_p)
    ns = int(np.clip((R - rp) * 0.8, 16, 96))
    nphi = int(np.clip(2 * np.pi * R * 0.9, 128, 1440))
    polar = _iris_polar(rng, patient, ns, nphi, rp, R)
    polar = np.concatenate([polar[:, -2:], polar, polar[:, :2]], axis=1)
    wiggle = 0.02 * np.sin(phi * 7 + ring_s * 4 + rng.uniform(0, 6.3))
    map_x = ((phi + wiggle) * np.float32(1 / (2 * np.pi)) % 1.0) * nphi + 2
    iris = cv2.remap(polar, map_x, ring_s * np.float32(ns - 1), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if patient.arcus > 0:
        # Arcus senilis: a grey-white band inside the limbus, densest above and below.
        dens = 0.6 + 0.4 * np.abs(by) / np.maximum(r, 1)
        arc = patient.arcus * 0.35 * dens * _smoothstep(0.84 * R, 0.92 * R, r) * _smoothstep(0.99 * R, 0.955 * R, r)
        iris += (np.array((0.8, 0.8, 0.78), np.float32) - iris) * arc[..., None]
    return iris


def _pupil_layer(rng: np.random.Generator, scene: _Scene, qx: np.ndarray, qy: np.ndarray, pr: np.ndarray,
                 opacity: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
    """What is seen through the pupil at offsets (qx, qy) from its centre: dark, or the lens opacity."""
    rp = scene.rp
    dark = rng.uniform(0.015, 0.045)
    colour = np.array([dark, dark * 0.92, dark * 0.95], np.float32)
    # A faint red reflex or stray light in some photographs, in either class.
    if rng.uniform() < 0.3:
        colour = colour + np.array((0.04, 0.01, 0.008), np.float32) * rng.uniform(0.3, 1)
    if rng.uniform() < 0.4:
        colour = colour + np.float32(rng.uniform(0.0, 0.03))
    pupil = colour * (1 + 0.6 * _smoothstep(rp, 0.2 * rp, pr))[..., None]
    if opacity is not None:
        c, s = np.float32(np.cos(scene.theta)), np.float32(np.sin(scene.theta))
        op_col, op_a = opacity(np.float32(scene.mirror) * (c * qx + s * qy), -s * qx + c * qy)
        pupil += (op_col - pupil) * op_a[..., None]
    return pupil


def _compose(scene: _Scene, patient: _Patient, rng: np.random.Generator,
             opacity: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None
             ) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    W, H, R, rp = scene.width, scene.height, scene.R, scene.rp
    fine = max(1.0, R / 130.0)  # width of the finest detail, px
    edges_c, skin_c, scal_q, globe_q = _smooth_fields(scene, patient, rng)
    ix, iy = (float(z) for z in _to_image(scene, np.float32(scene.gx), np.float32(scene.gy)))
    pcx, pcy = (float(z) for z in _to_image(scene, np.float32(scene.gx + scene.pdx), np.float32(scene.gy + scene.pdy)))
    ib = _box(ix, iy, R * 1.15 + 3, W, H)
    pb = _box(pcx, pcy, rp + 2, W, H)
    # Everything about the globe happens inside a box round the fissure and the iris ("g" arrays).
    rows, cols = np.nonzero((edges_c[..., 0] > -4) & (edges_c[..., 1] < 4))
    gbox = (slice(min(ib[0].start, max(0, rows.min() * 2 - 4)), max(ib[0].stop, min(H, rows.max() * 2 + 6))),
            slice(min(ib[1].start, max(0, cols.min() * 2 - 4)), max(ib[1].stop, min(W, cols.max() * 2 + 6))))
    edges = _up_box(edges_c, W, H, gbox)
    d_up, d_lo = edges[..., 0], edges[..., 1]
    scal = _up_box(scal_q, W, H, gbox)
    car_a, lid_sh = scal[..., 0], scal[..., 1]
    edge = np.float32(1 / (0.9 * fine))
    open_a = np.clip(d_up * edge + 0.5, 0, 1) * np.clip(0.5 - d_lo * edge, 0, 1)
    skin = _skin_layer(rng, scene, patient, skin_c)

    # ---- the globe: sclera and vessels, iris, pupil, corneal reflections ----
    globe = _up_box(globe_q, W, H, gbox)
    vcan = np.zeros((H, W), np.uint8)
    _vessels(rng, scene, vcan, float(rng.uniform(0, 1)))
    vf = vcan[gbox].astype(np.float32) * np.float32(1 / 255)
    vf = 0.85 * _blur(vf, 0.55 * fine) + 0.5 * _blur(vf, 2.5 * fine)
    globe *= 1 - vf[..., None] * np.array((0.2, 0.62, 0.6), np.float32)

    xs, ys = _pixel_grid(W, H)
    bx, by = xs[ib] - np.float32(ix), ys[ib] - np.float32(iy)
    r = np.sqrt(bx * bx + by * by)
    iris = _iris_layer(rng, scene, patient, bx, by, r, (pcx - ix, pcy - iy))
    i_g = _within(gbox, ib)
    iris *= lid_sh[i_g][..., None]
    # A faint reflection of the surroundings in the tear film, brighter on the side of the light.
    lx, ly = (float(z) - float(o) for z, o in zip(_to_image(scene, scene.light[0], scene.light[1]),
                                                   _to_image(scene, 0.0, 0.0), strict=True))
    sheen = rng.uniform(0.015, 0.06) * _smoothstep(-0.3 * R, R, bx * lx + by * ly)
    iris += sheen[..., None]
    limbus_w = max(0.8, 0.025 * R)
    iris_a = _smoothstep(R + limbus_w, R - limbus_w, r)
    sub = globe[i_g]
    # The corneoscleral junction: a soft grey-blue haze just outside the iris.
    haze = np.exp(-np.maximum(r - R, 0) / (0.04 * R)) * (r > R - limbus_w) * rng.uniform(0.08, 0.22)
    sub += (np.array((0.6, 0.62, 0.66), np.float32) * lid_sh[i_g][..., None] - sub) * haze[..., None]
    sub[:] = cv2.blendLinear(sub, iris, 1 - iris_a, iris_a)

    qx, qy = xs[pb] - np.float32(pcx), ys[pb] - np.float32(pcy)
    pr = np.sqrt(qx * qx + qy * qy)
    pupil_a = np.clip(rp - pr + 0.5, 0, 1)
    pupil = _pupil_layer(rng, scene, qx, qy, pr, opacity)
    pupil *= lid_sh[_within(gbox, pb)][..., None]
    pupil += sheen[_within(ib, pb)][..., None]
    sub = globe[_within(gbox, pb)]
    sub[:] = cv2.blendLinear(sub, pupil, 1 - pupil_a, pupil_a)

    hl = np.zeros((H, W), np.uint8)
    _highlights(rng, scene, hl)
    hlf = hl[ib].astype(np.float32) * np.float32(1 / 255)
    hlf = 0.8 * _blur(hlf, 0.45 * fine) + 0.3 * _blur(hlf, 2.5 * fine)
    hlf = np.clip(hlf * _smoothstep(R * 1.02, R * 0.96, r), 0, 1)
    sub = globe[i_g]
    sub += (1 - sub) * hlf[..., None]

    img = skin
    img[gbox] = cv2.blendLinear(skin[gbox], globe, 1 - open_a, open_a)
    lash = np.zeros((H, W), np.uint8)
    _lashes(rng, scene, patient, lash)
    lx, ly, lw, lh = cv2.boundingRect(lash)
    la = np.zeros((H, W), np.float32)
    if lw and lh:
        lb = (slice(ly, ly + lh), slice(lx, lx + lw))
        la[lb] = lash[lb].astype(np.float32) * np.float32(0.93 / 255)
        colour = np.empty((lh, lw, 3), np.float32)
        colour[:] = patient.lash_colour
        img[lb] = cv2.blendLinear(img[lb], colour, 1 - la[lb], la[lb])

    # ---- masks, exactly as drawn: lids and lashes hide what is under them ----
    open_m = np.zeros((H, W), bool)
    open_m[gbox] = (open_a >= 0.5) & (la[gbox] < 0.5)
    not_caruncle = np.ones((H, W), bool)
    not_caruncle[gbox] = car_a < 0.5
    disk_i = np.zeros((H, W), bool)
    disk_i[ib] = r <= R
    disk_p = np.zeros((H, W), bool)
    disk_p[pb] = pr <= rp
    pupil_m = open_m & disk_p
    iris_m = open_m & disk_i & ~disk_p
    sclera_m = open_m & ~disk_i & not_caruncle
    masks = {"pupil": pupil_m, "iris": iris_m, "sclera": sclera_m, "skin": ~(pupil_m | iris_m | sclera_m)}
    geometry = {
        "pupil_center": (pcx, pcy),
        "pupil_radius": float(rp),
        "iris_center": (ix, iy),
        "iris_radius": float(R),
        "pupil_visible_fraction": round(float(pupil_m.sum() / max(int(disk_p.sum()), 1)), 4),
        "medial_canthus": tuple(float(z) for z in _to_image(scene, scene.A, scene.tilt)),
        "lateral_canthus": tuple(float(z) for z in _to_image(scene, -scene.A, -scene.tilt)),
        "rotation_deg": round(float(np.rad2deg(scene.theta)), 3),
    }
    return img, masks, geometry


def _photometric(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, int]:
    """The camera: colour cast, exposure, uneven light, defocus, sharpening, sensor noise, tone curve."""
    H, W = img.shape[:2]
    xs, ys = _coarse_grid(W, H, 4)
    warm = rng.uniform(-0.08, 0.1)
    tint = rng.uniform(-0.03, 0.03)
    gain = np.array([1 + warm, 1 + tint, 1 - warm], np.float32) * np.float32(rng.uniform(0.85, 1.12) * 255)
    vx, vy = W * rng.uniform(0.3, 0.7), H * rng.uniform(0.3, 0.7)
    rr = ((xs - vx) ** 2 + (ys - vy) ** 2) / (0.25 * (W * W + H * H))
    ang = rng.uniform(0, 2 * np.pi)
    grad = rng.uniform(0, 0.25) * ((xs - W / 2) * np.cos(ang) + (ys - H / 2) * np.sin(ang)) / max(W, H)
    field = (1 - rng.uniform(0.0, 0.45) * rr ** 1.3) * (1 + grad)
    img *= _up(field[..., None] * gain, W, H)  # now 0..255
    scale = min(W, H * 4 / 3) / 512
    sigma = rng.uniform(0.3, 1.4) * scale if rng.uniform() < 0.75 else 0.0
    img = _blur(img, sigma)
    if rng.uniform() < 0.35:
        img += np.float32(rng.uniform(0.2, 0.6)) * (img - _blur(img, 1.5 * max(scale, 0.5)))
    lum_sigma = rng.uniform(1.0, 4.5)
    noise = _up(_white(rng, ((H + 1) // 2, (W + 1) // 2, 3)) * np.float32(lum_sigma * rng.uniform(0, 0.8)), W, H)
    noise += _white(rng, (H, W))[..., None] * np.float32(lum_sigma)
    img += noise
    out = cv2.convertScaleAbs(cv2.max(img, 0.0))
    # A mild tone curve, as phone cameras apply, through a lookup table.
    gamma = rng.uniform(0.88, 1.12)
    lut = np.clip(((np.arange(256) / 255.0) ** gamma) * 255 + 0.5, 0, 255).astype(np.uint8)
    quality = int(rng.integers(70, 96))
    return cv2.LUT(out, lut), quality


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def _resolve_condition(rng: np.random.Generator, label: str | None, cataract_type: str | None,
                       grade: int | None) -> tuple[str, str | None, int]:
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if cataract_type is not None and cataract_type not in CATARACT_TYPES:
        raise ValueError(f"cataract_type must be one of {', '.join(CATARACT_TYPES)}, got {cataract_type!r}")
    if grade is not None and (isinstance(grade, bool) or not isinstance(grade, (int, np.integer))
                              or not 0 <= grade <= 4):
        raise ValueError(f"grade must be an integer from 0 to 4, got {grade!r}")
    if label is None:
        if cataract_type is not None or (grade is not None and grade > 0):
            label = "cataract"
        elif grade == 0:
            label = "normal"
        else:
            label = LABELS[int(rng.integers(0, 2))]
    if label == "normal":
        if cataract_type is not None or (grade is not None and grade != 0):
            raise ValueError("a normal eye has no cataract type and grade 0; got a type or a non-zero grade")
        return label, None, 0
    if grade == 0:
        raise ValueError("a cataract eye needs a grade from 1 to 4, got 0")
    if cataract_type is None:
        if grade is not None and grade < 3:
            cataract_type = CATARACT_TYPES[int(rng.integers(0, 3))]
        else:
            cataract_type = CATARACT_TYPES[int(rng.integers(0, 4))]
    if grade is None:
        grade = int(rng.integers(3, 5)) if cataract_type == "mature" else int(rng.choice(4, p=_GRADE_WEIGHTS)) + 1
    if cataract_type == "mature" and grade < 3:
        raise ValueError(f"a mature cataract is grade 3 or 4, got grade {grade}")
    return label, cataract_type, int(grade)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in size)
            or min(size) < 64 or max(size) > 4096):
        raise ValueError(f"size must be (width, height) in pixels, each 64 to 4096, got {size!r}")
    return int(size[0]), int(size[1])


def render_eye(seed: int, *, label: str | None = None, cataract_type: str | None = None, grade: int | None = None,
               eye: str | None = None, size: tuple[int, int] = (512, 384),
               patient_seed: int | None = None) -> SyntheticEye:
    """Render one synthetic eye photograph of ``size`` (width, height) from ``seed``.

    Anything not given (label, type, grade, eye) is drawn from the seed. The scene (face, eye,
    camera) comes from one random stream and the lens opacity from another, so the same seed
    rendered as cataract and as normal differs only inside the pupil. ``patient_seed`` fixes
    what two eyes of one person share (skin, iris colour, age, lashes); it defaults to ``seed``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if eye is not None and eye not in EYES:
        raise ValueError(f"eye must be 'OD' or 'OS', got {eye!r}")
    width, height = _check_size(size)
    if patient_seed is None:
        patient_seed = seed
    elif isinstance(patient_seed, bool) or not isinstance(patient_seed, (int, np.integer)) or patient_seed < 0:
        raise ValueError(f"patient_seed must be a non-negative integer, got {patient_seed!r}")
    scene_ss, opacity_ss, choice_ss = np.random.SeedSequence(int(seed)).spawn(3)
    choice_rng = np.random.default_rng(choice_ss)
    label, kind, grade = _resolve_condition(choice_rng, label, cataract_type, grade)
    if eye is None:
        eye = EYES[int(choice_rng.integers(0, 2))]
    patient = _draw_patient(np.random.default_rng(np.random.SeedSequence([int(patient_seed), _PATIENT_STREAM])))
    scene_rng = np.random.default_rng(scene_ss)
    # OD photographed face on has its nasal canthus on the image's right.
    scene = _draw_scene(scene_rng, width, height, 1.0 if eye == "OD" else -1.0)
    opacity = None
    if kind is not None:
        op_rng = np.random.default_rng(opacity_ss)
        rp, light = scene.rp, scene.light

        def opacity(du: np.ndarray, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return _opacity(op_rng, kind, grade, du, dv, rp, light)

    img, masks, geometry = _compose(scene, patient, scene_rng, opacity)
    image, quality = _photometric(scene_rng, img)
    meta = {
        "label": label,
        "type": kind,
        "grade": grade,
        "eye": eye,
        "seed": int(seed),
        "patient_seed": int(patient_seed),
        **geometry,
        "iris_colour": patient.iris_colour,
        "skin_tone": round(patient.tone, 4),
        "jpeg_quality": quality,
        "size": (width, height),
        "generator_version": GENERATOR_VERSION,
    }
    return SyntheticEye(image=image, masks=masks, meta=meta)


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # Fixed encoder settings and no metadata, so the same pixels always give the same bytes.
    Image.fromarray(image, "RGB").save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=False,
                                       progressive=False)
    return buf.getvalue()


def _encode_mask(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * np.uint8(255), "L").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def _image_seed(seed: int, index: int) -> int:
    """The seed of image ``index``: what ``SeedSequence(seed).spawn(n)[index]`` would give, as an int."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint32)[0])


def _dataset_plan(n: int, seed: int, cataract_fraction: float) -> list[tuple[str, str | None, int]]:
    """Label, type and grade for each index: an exact cataract count, types and grades balanced."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PLAN_STREAM]))
    n_cat = round(n * cataract_fraction)
    is_cat = np.zeros(n, bool)
    is_cat[rng.permutation(n)[:n_cat]] = True
    types = [CATARACT_TYPES[i % 4] for i in range(n_cat)]
    types = [types[i] for i in rng.permutation(n_cat)]
    # Per type, grades come from shuffled blocks; mature's 3s and 4s balance the others' 1s and 2s.
    blocks = {kind: [1, 1, 2, 2, 3, 4] for kind in CATARACT_TYPES[:3]}
    blocks["mature"] = [3, 4]
    queues: dict[str, list[int]] = {kind: [] for kind in CATARACT_TYPES}
    plan: list[tuple[str, str | None, int]] = []
    k = 0
    for i in range(n):
        if not is_cat[i]:
            plan.append(("normal", None, 0))
            continue
        kind = types[k]
        k += 1
        if not queues[kind]:
            queues[kind] = [int(g) for g in rng.permutation(blocks[kind])]
        plan.append(("cataract", kind, queues[kind].pop()))
    return plan


def generate_dataset(out_dir: str | Path, n: int, seed: int, *, cataract_fraction: float = 0.5,
                     size: tuple[int, int] = (512, 384),
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Write ``n`` synthetic eye photographs, their masks and ``labels.csv`` under ``out_dir``.

    Layout: ``cataract/`` and ``normal/`` hold ``syn_<seed>_<index>.jpg``; ``masks/`` holds
    ``<stem>_<mask>.png`` (0/255) for each of MASK_NAMES; ``labels.csv`` has the columns
    file, label, type, grade, seed, eye, group. Consecutive pairs of images are the right (OD)
    and left (OS) eye of one synthetic patient and share its group. The same arguments give the
    same bytes in every file. Any image can be made again from its row:
    ``render_eye(seed, label=..., cataract_type=type or None, grade=..., eye=..., size=size,
    patient_seed=<seed of the group's OD row>)``. Returns the rows of ``labels.csv``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(cataract_fraction) <= 1.0:
        raise ValueError(f"cataract_fraction must be between 0 and 1, got {cataract_fraction!r}")
    _check_size(size)
    out = Path(out_dir)
    for sub in ("cataract", "normal", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for i, (label, kind, grade) in enumerate(_dataset_plan(int(n), int(seed), float(cataract_fraction))):
        image_seed = _image_seed(int(seed), i)
        # Both eyes of a patient take the patient from the seed of the right eye, the pair's first.
        eye = render_eye(image_seed, label=label, cataract_type=kind, grade=grade, eye=EYES[i % 2], size=size,
                         patient_seed=_image_seed(int(seed), i - i % 2))
        stem = f"syn_{seed}_{i:05d}"
        rel = f"{label}/{stem}.jpg"
        atomic_write_bytes(out / rel, _encode_jpeg(eye.image, eye.meta["jpeg_quality"]))
        for name in MASK_NAMES:
            atomic_write_bytes(out / "masks" / f"{stem}_{name}.png", _encode_mask(eye.masks[name]))
        rows.append({"file": rel, "label": label, "type": kind or "", "grade": grade, "seed": image_seed,
                     "eye": eye.meta["eye"], "group": f"syn_{seed}_p{i // 2:05d}"})
        if progress is not None:
            progress(i + 1, int(n))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["file", "label", "type", "grade", "seed", "eye", "group"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "labels.csv", text.getvalue().encode("utf-8"))
    return rows


# The preview's plan: each row shows two normal eyes and the four grades of one cataract type.
_PREVIEW_PLAN: tuple[tuple[str | None, int], ...] = tuple(
    item
    for kind, grades in (("nuclear", (1, 2, 3, 4)), ("cortical", (1, 2, 3, 4)),
                         ("posterior_subcapsular", (1, 2, 3, 4)), ("mature", (3, 4, 3, 4)))
    for item in ((None, 0), (None, 0), *((kind, g) for g in grades))
)
_SHORT = {"nuclear": "nuclear", "cortical": "cortical", "posterior_subcapsular": "PSC", "mature": "mature"}


def preview_grid(seeds: Sequence[int], path: str | Path, *, columns: int = 6, tile_width: int = 232,
                 size: tuple[int, int] = (512, 384)) -> np.ndarray:
    """Render one eye per seed, normal and each cataract type and grade in turn, as a labelled PNG grid."""
    if not seeds:
        raise ValueError("preview_grid needs at least one seed")
    if columns < 1 or tile_width < 32:
        raise ValueError(f"columns must be at least 1 and tile_width at least 32, got {columns} and {tile_width}")
    width, height = _check_size(size)
    tile_h = round(tile_width * height / width)
    rows_n = -(-len(seeds) // columns)
    grid = np.full((rows_n * tile_h, columns * tile_width, 3), 255, np.uint8)
    for k, seed in enumerate(seeds):
        kind, grade = _PREVIEW_PLAN[k % len(_PREVIEW_PLAN)]
        eye = render_eye(int(seed), label="normal" if kind is None else "cataract", cataract_type=kind, grade=grade,
                         size=(width, height))
        # Through JPEG, as the dataset stores them, then shrunk for the grid.
        jpeg = np.asarray(Image.open(io.BytesIO(_encode_jpeg(eye.image, eye.meta["jpeg_quality"]))).convert("RGB"))
        tile = cv2.resize(jpeg, (tile_width, tile_h), interpolation=cv2.INTER_AREA)
        text = "normal" if kind is None else f"{_SHORT[kind]} {grade}"
        for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(tile, text, (6, tile_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, thick, cv2.LINE_AA)
        r, c = divmod(k, columns)
        grid[r * tile_h:(r + 1) * tile_h, c * tile_width:(c + 1) * tile_width] = tile
    buf = io.BytesIO()
    Image.fromarray(grid, "RGB").save(buf, "PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return grid


if __name__ == "__main__":
    # Regenerates docs/synthetic_preview.png: python -m models.synthetic
    preview_grid(list(range(2026, 2050)), Path(__file__).resolve().parent.parent / "docs" / "synthetic_preview.png")
