"""Raster helpers of the synthetic eye generator: pixel grids, smooth steps, blurs, noise and boxes."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = float(1 << _SHIFT)


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


def _unit(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6)


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

