"""The iris of a synthetic eye: a stroma texture drawn in polar coordinates, to be wrapped round the pupil."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.synthetic.parameters import _IRIS_COLOURS, _Patient
from models.synthetic.raster import _ONE, _SHIFT, _periodic_noise, _smoothstep, _unit, _white


@dataclass(frozen=True)
class _Polar:
    """The texture's grid: ``ns`` ring positions by ``nphi`` angles, drawn with ``pad`` spare columns each side."""

    ns: int
    nphi: int
    pad: int
    per_px: float  # grid rows per output pixel along the radius


def _wrap_blur(img: np.ndarray, sigma_s: float, sigma_phi: float) -> np.ndarray:
    pad = int(3 * sigma_phi) + 2
    padded = np.concatenate([img[:, -pad:], img, img[:, :pad]], axis=1)
    out = cv2.GaussianBlur(padded, (0, 0), sigmaX=max(sigma_phi, 0.1), sigmaY=max(sigma_s, 0.1),
                           borderType=cv2.BORDER_REFLECT)
    return out[:, pad:-pad]



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
    grid = _Polar(ns, nphi, max(8, nphi // 40), ns / (R - rp))
    per_px = grid.per_px
    collar = 0.22 + rng.uniform(-0.04, 0.1)
    collar_s = collar + 0.04 * _periodic_noise(rng, nphi, 48, 0.5)[None, :]
    pits = _crypts(rng, grid, collar)
    fib = _fibres(rng, grid, collar)
    fib_soft = _wrap_blur(fib, 2.0 * per_px, 1.5)
    furrows = _furrows(rng, grid)

    mott = _unit(cv2.resize(rng.standard_normal((max(2, ns // 5), max(8, nphi // 10)), dtype=np.float32),
                            (nphi, ns), interpolation=cv2.INTER_CUBIC))
    grain = _unit(_wrap_blur(_white(rng, (ns, nphi)), 1.5 * per_px, 0.8))
    zone = _smoothstep(-0.03, 0.1, s - collar_s)
    ridge = np.exp(-(((s - collar_s) / 0.03) ** 2))
    # Between fibres the stroma is darker; the fibres and the collarette stand out lighter.
    lum = 1 + contrast * (0.35 * mott + 0.25 * grain - 0.9 * (0.35 - fib_soft) + 0.5 * ridge)
    lum *= 1 - 0.3 * furrows
    layers = [(fibre_c, np.clip(contrast * 1.6 * fib + 0.5 * contrast * ridge, 0, 0.7)),
              (crypt_c, np.clip(pits * (1 - 0.6 * fib), 0, 0.9))]
    if patient.iris_colour in ("blue", "grey", "green", "hazel") and rng.uniform() < 0.35:
        layers.append((np.array((92, 56, 30), np.float32) / 255, 0.75 * _freckles(rng, grid, rp, R)))
    layers.append((limbal, np.broadcast_to(_smoothstep(0.72, 1.0, s) * rng.uniform(0.35, 0.7), (ns, nphi))))
    ruff_s = (0.8 + 1.6 * np.abs(_periodic_noise(rng, nphi, 70, 0.2))[None, :]) * per_px / ns
    layers.append((np.array((34, 22, 17), np.float32) / 255, 1 - _smoothstep(ruff_s * 0.6, ruff_s * 1.4, s)))
    return _flatten(layers, lum, zone, inner, outer)


def _flatten(layers: list[tuple[np.ndarray, np.ndarray]], lum: np.ndarray, zone: np.ndarray, inner: np.ndarray,
             outer: np.ndarray) -> np.ndarray:
    """Colours of a stack of layers over the stroma, the top layer last.

    Each layer is a flat colour over what lies below with some coverage; the weight of each colour
    is its coverage times what the layers above leave uncovered. What shows through is the stroma,
    its pupillary zone (``inner``) and ciliary zone (``outer``) split by ``zone``, shaded by ``lum``.
    """
    ns, nphi = lum.shape
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


def _crypts(rng: np.random.Generator, grid: _Polar, collar: float) -> np.ndarray:
    """Crypts: dark pits in the stroma, most just outside the collarette."""
    ns, nphi, pad = grid.ns, grid.nphi, grid.pad
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
    return _wrap_blur(_fold(pits, pad), 0.5 * grid.per_px, 0.6)


def _fibres(rng: np.random.Generator, grid: _Polar, collar: float) -> np.ndarray:
    """Fibres: wavy strands, most from the collarette outwards, some inside it."""
    ns, nphi, pad = grid.ns, grid.nphi, grid.pad
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
    return _wrap_blur(_fold(fib, pad), 0.4 * grid.per_px, 0.4)


def _furrows(rng: np.random.Generator, grid: _Polar) -> np.ndarray:
    """A few broken concentric furrows in the outer, ciliary zone."""
    ns, nphi, pad, per_px = grid.ns, grid.nphi, grid.pad, grid.per_px
    furrows = _wrapped_canvas(ns, nphi, pad)
    for _ in range(int(rng.integers(0, 6))):
        sc = rng.uniform(0.62, 0.93)
        p0 = pad + rng.uniform(0, nphi)
        span = nphi * rng.uniform(0.04, 0.2)
        pp = p0 + np.linspace(0, span, 10)
        sv = (sc + np.cumsum(rng.normal(0, 0.006, 10))) * (ns - 1)
        cv2.polylines(furrows, [np.round(np.stack([pp, sv], -1) * _ONE).astype(np.int32)], False,
                      int(rng.uniform(120, 230)), max(1, round(1.2 * per_px)), cv2.LINE_AA, _SHIFT)
    return _wrap_blur(_fold(furrows, pad), 0.6 * per_px, 1.0)


def _freckles(rng: np.random.Generator, grid: _Polar, rp: float, R: float) -> np.ndarray:
    """Coverage of a few brown iris freckles, round in the photograph whatever their ring position."""
    ns, nphi, pad, per_px = grid.ns, grid.nphi, grid.pad, grid.per_px
    spots = _wrapped_canvas(ns, nphi, pad)
    for _ in range(int(rng.integers(1, 5))):
        frac = rng.uniform(0.35, 0.9)
        cs, cp = ns * frac, pad + rng.uniform(0, nphi)
        rad = R * rng.uniform(0.015, 0.04)
        cols_per_px = nphi / (2 * np.pi * (rp + frac * (R - rp)))
        axes = (int(rad * cols_per_px * _ONE), int(rad * per_px * _ONE))
        cv2.ellipse(spots, (int(cp * _ONE), int(cs * _ONE)), axes, 0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    return _wrap_blur(_fold(spots, pad), 0.6 * per_px, 0.6)
