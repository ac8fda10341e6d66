"""What varies slowly in a synthetic eye photograph, drawn at low resolution: the lid margins, skin and globe colour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.synthetic.parameters import _lid_profile, _Patient, _Scene
from models.synthetic.raster import _coarse_grid, _smooth_noise, _smoothstep, _up


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



@dataclass(frozen=True)
class _Crease:
    """The upper lid's crease: its height above the lid margin at the middle, and two waves along it."""

    height: float
    k1: float
    k2: float
    p1: float
    p2: float

    def distance(self, f: _Fissure, R: float) -> tuple[np.ndarray, np.ndarray]:
        """(position along the crease, signed distance below it in px) on the fissure's grid."""
        tc = f.t / 1.15
        qc = np.power(np.maximum(1 - tc * tc, 0), 0.8)
        d_c = f.v - (f.line - self.height * qc
                     + R * 0.04 * (np.sin(self.k1 * tc + self.p1) + 0.5 * np.sin(self.k2 * tc + self.p2)))
        return tc, d_c


def _smooth_fields(scene: _Scene, patient: _Patient, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything that varies slowly: skin and globe colour at quarter resolution, lid edges at half.

    Returns, at half resolution, (d_up, d_lo) stacked and the skin colour; at quarter resolution,
    (car_a, lid_sh) stacked and the globe colour. d_up and d_lo are signed distances in pixels to
    the upper and lower lid margins (the fissure is where d_up > 0 > d_lo); interpolating them
    keeps the fissure's edge sharp at full resolution.
    """
    W, H = scene.width, scene.height
    q = _fissure(scene, *_coarse_grid(W, H, 4))
    skin_q, crease = _skin_colour(rng, scene, patient, q)
    car_a, lid_sh, globe = _globe_colour(rng, scene, patient, q)
    h = _fissure(scene, *_coarse_grid(W, H, 2))
    skin = _lid_detail(rng, scene, patient, h, crease, skin_q)
    return np.stack([h.d_up, h.d_lo], -1), skin, np.stack([car_a, lid_sh], -1), globe


def _skin_colour(rng: np.random.Generator, scene: _Scene, patient: _Patient, q: _Fissure
                 ) -> tuple[np.ndarray, _Crease]:
    """Skin colour on the grid of ``q``: the bulges of the lids, the hollows at the canthi, colour round the eye."""
    R, A = scene.R, scene.A
    u, v, t, line, d_up = q.u, q.v, q.t, q.line, q.d_up
    d_ls = q.d_lo - q.m_lo  # >0 on the lower lid's skin
    crease = _Crease(scene.Hu + scene.crease, rng.uniform(2, 5), rng.uniform(6, 11), rng.uniform(0, 6.3),
                     rng.uniform(0, 6.3))
    _, d_c = crease.distance(q, R)
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
    return skin_q, crease


def _globe_colour(rng: np.random.Generator, scene: _Scene, patient: _Patient, q: _Fissure
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(caruncle coverage, lid shadow, globe colour) on the grid of ``q``: sclera shading, redness, caruncle, plica."""
    R, A = scene.R, scene.A
    u, v, d_up, d_lo = q.u, q.v, q.d_up, q.d_lo
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
    return car_a, lid_sh, globe


def _lid_detail(rng: np.random.Generator, scene: _Scene, patient: _Patient, h: _Fissure, crease: _Crease,
                skin_q: np.ndarray) -> np.ndarray:
    """The skin at the grid of ``h``: the crease and its fold, the lash line, the lower lid's moist rim."""
    R = scene.R
    d_up, d_lo, m_lo, inside = h.d_up, h.d_lo, h.m_lo, h.inside
    tc, d_c = crease.distance(h, R)
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
    return skin
