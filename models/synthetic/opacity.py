"""Lens opacities of the synthetic eye, seen through the pupil: nuclear, cortical, posterior subcapsular, mature."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.synthetic.parameters import CATARACT_TYPES
from models.synthetic.raster import _blur, _periodic_noise, _smooth_noise, _smoothstep, _unit

# Each type: (rng, grade, du, dv, rho, phi, rp) -> colour (h, w, 3) and coverage (h, w), before
# the pupil margin's shadow. du, dv: canonical offsets from the pupil's centre (px); rho, phi:
# the same in polar form, rho in pupil radii.
_Draw = Callable[[np.random.Generator, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float],
                 tuple[np.ndarray, np.ndarray]]


def _opacity(rng: np.random.Generator, kind: str, grade: int, du: np.ndarray, dv: np.ndarray, rp: float,
             light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour (h, w, 3) and coverage (h, w) of the lens opacity, in pupil-relative canonical coords."""
    rho = np.sqrt(du * du + dv * dv) / np.float32(rp)
    phi = np.arctan2(dv, du)
    draw = _TYPES.get(kind)
    if draw is None:
        raise ValueError(f"unknown cataract type {kind!r}; expected one of {', '.join(CATARACT_TYPES)}")
    col, alpha = draw(rng, grade, du, dv, rho, phi, rp)
    # The lens lies behind the iris plane, so the pupil margin throws a crescent of shadow onto it.
    lx, ly = float(light[0]), float(light[1])
    shadow = _smoothstep(0.7, 1.0, rho) * np.clip((du * lx + dv * ly) / (rp * rho + 1e-3), 0, 1)
    alpha = np.clip(alpha, 0, 1) * (1 - 0.4 * shadow)
    return np.clip(col, 0, 1).astype(np.float32), alpha.astype(np.float32)


def _nuclear(rng: np.random.Generator, g: int, du: np.ndarray, dv: np.ndarray, rho: np.ndarray, phi: np.ndarray,
             rp: float) -> tuple[np.ndarray, np.ndarray]:
    """A yellow to brown haze, densest in the centre."""
    cell = max(3.0, rp * 0.3)
    strength = (0.0, 0.32, 0.46, 0.6, 0.74)[g] * rng.uniform(0.92, 1.08)
    sigma = rng.uniform(0.5, 0.75)
    alpha = strength * (0.5 + 0.5 * np.exp(-((rho / sigma) ** 2))) * (1 + 0.1 * _smooth_noise(rng, rho.shape, cell))
    cols = {1: (182, 166, 130), 2: (194, 162, 108), 3: (182, 130, 70), 4: (152, 96, 48)}
    colour = np.array(cols[g], np.float32) / 255 * rng.uniform(0.92, 1.08)
    glow = 1 + 0.15 * np.exp(-((rho / 0.35) ** 2))
    return colour[None, None] * glow[..., None], alpha


def _cortical(rng: np.random.Generator, g: int, du: np.ndarray, dv: np.ndarray, rho: np.ndarray, phi: np.ndarray,
              rp: float) -> tuple[np.ndarray, np.ndarray]:
    """White spokes from the rim towards the centre, over a faint haze."""
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
    return col, alpha


def _posterior_subcapsular(rng: np.random.Generator, g: int, du: np.ndarray, dv: np.ndarray, rho: np.ndarray,
                           phi: np.ndarray, rp: float) -> tuple[np.ndarray, np.ndarray]:
    """A granular plaque near the centre, with a ragged edge."""
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
    return col, alpha


def _mature(rng: np.random.Generator, g: int, du: np.ndarray, dv: np.ndarray, rho: np.ndarray, phi: np.ndarray,
            rp: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole pupil white or grey, mottled and faintly striated."""
    strength = rng.uniform(0.86, 0.92) if g == 3 else rng.uniform(0.92, 0.97)
    base = np.array((190, 188, 176) if g == 3 else (226, 223, 210), np.float32) / 255 * rng.uniform(0.95, 1.05)
    mott = _smooth_noise(rng, rho.shape, max(3.0, rp * 0.18))
    freq = rng.uniform(18, 36)
    stri = np.sin(phi * freq + 2 * np.sin(phi * 5)) * _smoothstep(0.35, 0.95, rho)
    shade = 1 + 0.05 * mott + 0.05 * stri - 0.08 * _smoothstep(0.6, 1.0, rho)
    col = base[None, None] * shade[..., None]
    yellow = np.exp(-((rho / 0.5) ** 2)) * rng.uniform(0.0, 0.6)
    col = col * (1 - 0.15 * yellow[..., None] * np.array([0.0, 0.35, 1.0], np.float32))
    return col, np.full_like(rho, strength)


_TYPES: dict[str, _Draw] = {"nuclear": _nuclear, "cortical": _cortical,
                            "posterior_subcapsular": _posterior_subcapsular, "mature": _mature}
