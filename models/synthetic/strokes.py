"""Strokes of the synthetic eye drawn with OpenCV: lashes, conjunctival vessels, skin wrinkles, corneal reflections."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from models.synthetic.parameters import _lids_at, _Patient, _Scene, _to_image
from models.synthetic.raster import _ONE, _SHIFT, _smoothstep


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
            lo, hi = sorted(rng.uniform(-1.0, 0.8, 2))
            tt = np.linspace(lo, hi, 7)
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

