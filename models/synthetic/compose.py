"""Composing a synthetic eye photograph: skin, globe, iris, pupil, reflections, lashes, masks, then the camera."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from models.synthetic.fields import _smooth_fields
from models.synthetic.iris import _iris_polar
from models.synthetic.parameters import _Patient, _Scene, _to_image
from models.synthetic.raster import (
    _blur,
    _box,
    _coarse_grid,
    _pixel_grid,
    _smoothstep,
    _up,
    _up_box,
    _white,
    _within,
)
from models.synthetic.strokes import _highlights, _lashes, _vessels, _wrinkles

_Opacity = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""The lens opacity at canonical offsets from the pupil's centre: colour and coverage."""


@dataclass(frozen=True)
class _Layout:
    """Where the iris and pupil lie in the photograph, and the boxes each is drawn in (image slices)."""

    iris: tuple[float, float]  # centre, px
    pupil: tuple[float, float]
    ib: tuple[slice, slice]  # round the iris
    pb: tuple[slice, slice]  # round the pupil
    gbox: tuple[slice, slice]  # round the fissure and the iris: everything about the globe happens in here


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


def _compose(scene: _Scene, patient: _Patient, rng: np.random.Generator, opacity: _Opacity | None
             ) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """The photograph as the eye looks, before the camera: RGB 0..1, the exact masks, the geometry."""
    W, H, R = scene.width, scene.height, scene.R
    fine = max(1.0, R / 130.0)  # width of the finest detail, px
    edges_c, skin_c, scal_q, globe_q = _smooth_fields(scene, patient, rng)
    lay = _layout(scene, edges_c)
    edges = _up_box(edges_c, W, H, lay.gbox)
    d_up, d_lo = edges[..., 0], edges[..., 1]
    scal = _up_box(scal_q, W, H, lay.gbox)
    car_a, lid_sh = scal[..., 0], scal[..., 1]
    edge = np.float32(1 / (0.9 * fine))
    open_a = np.clip(d_up * edge + 0.5, 0, 1) * np.clip(0.5 - d_lo * edge, 0, 1)
    skin = _skin_layer(rng, scene, patient, skin_c)
    # The globe, painted back to front: sclera and vessels, iris, pupil, corneal reflections.
    globe = _sclera(rng, scene, globe_q, lay.gbox, fine)
    r, sheen = _paint_iris(rng, scene, patient, globe, lid_sh, lay)
    pr = _paint_pupil(rng, scene, globe, lid_sh, sheen, lay, opacity)
    _paint_highlights(rng, scene, globe, lay, r, fine)
    img = skin
    img[lay.gbox] = cv2.blendLinear(skin[lay.gbox], globe, 1 - open_a, open_a)
    la = _paint_lashes(rng, scene, patient, img)

    # Masks exactly as drawn: lids and lashes hide what is under them.
    open_m = np.zeros((H, W), bool)
    open_m[lay.gbox] = (open_a >= 0.5) & (la[lay.gbox] < 0.5)
    not_caruncle = np.ones((H, W), bool)
    not_caruncle[lay.gbox] = car_a < 0.5
    disk_i = np.zeros((H, W), bool)
    disk_i[lay.ib] = r <= R
    disk_p = np.zeros((H, W), bool)
    disk_p[lay.pb] = pr <= scene.rp
    pupil_m = open_m & disk_p
    iris_m = open_m & disk_i & ~disk_p
    sclera_m = open_m & ~disk_i & not_caruncle
    masks = {"pupil": pupil_m, "iris": iris_m, "sclera": sclera_m, "skin": ~(pupil_m | iris_m | sclera_m)}
    geometry = {
        "pupil_center": lay.pupil,
        "pupil_radius": float(scene.rp),
        "iris_center": lay.iris,
        "iris_radius": float(R),
        "pupil_visible_fraction": round(float(pupil_m.sum() / max(int(disk_p.sum()), 1)), 4),
        "medial_canthus": tuple(float(z) for z in _to_image(scene, scene.A, scene.tilt)),
        "lateral_canthus": tuple(float(z) for z in _to_image(scene, -scene.A, -scene.tilt)),
        "rotation_deg": round(float(np.rad2deg(scene.theta)), 3),
    }
    return img, masks, geometry


def _layout(scene: _Scene, edges_c: np.ndarray) -> _Layout:
    """Centres of the iris and the pupil, and the boxes round them and round the open fissure (``edges_c``)."""
    W, H, R, rp = scene.width, scene.height, scene.R, scene.rp
    ix, iy = (float(z) for z in _to_image(scene, np.float32(scene.gx), np.float32(scene.gy)))
    pcx, pcy = (float(z) for z in _to_image(scene, np.float32(scene.gx + scene.pdx), np.float32(scene.gy + scene.pdy)))
    ib = _box(ix, iy, R * 1.15 + 3, W, H)
    pb = _box(pcx, pcy, rp + 2, W, H)
    rows, cols = np.nonzero((edges_c[..., 0] > -4) & (edges_c[..., 1] < 4))
    gbox = (slice(min(ib[0].start, max(0, rows.min() * 2 - 4)), max(ib[0].stop, min(H, rows.max() * 2 + 6))),
            slice(min(ib[1].start, max(0, cols.min() * 2 - 4)), max(ib[1].stop, min(W, cols.max() * 2 + 6))))
    return _Layout((ix, iy), (pcx, pcy), ib, pb, gbox)


def _sclera(rng: np.random.Generator, scene: _Scene, globe_q: np.ndarray, gbox: tuple[slice, slice],
            fine: float) -> np.ndarray:
    """The globe's colour at full resolution inside ``gbox``, with the conjunctival vessels."""
    W, H = scene.width, scene.height
    globe = _up_box(globe_q, W, H, gbox)
    vcan = np.zeros((H, W), np.uint8)
    _vessels(rng, scene, vcan, float(rng.uniform(0, 1)))
    vf = vcan[gbox].astype(np.float32) * np.float32(1 / 255)
    vf = 0.85 * _blur(vf, 0.55 * fine) + 0.5 * _blur(vf, 2.5 * fine)
    globe *= 1 - vf[..., None] * np.array((0.2, 0.62, 0.6), np.float32)
    return globe


def _paint_iris(rng: np.random.Generator, scene: _Scene, patient: _Patient, globe: np.ndarray, lid_sh: np.ndarray,
                lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Paint the iris onto ``globe``; returns, in ``lay.ib``, the distance from its centre and the tear film's sheen."""
    R = scene.R
    (ix, iy), (pcx, pcy) = lay.iris, lay.pupil
    xs, ys = _pixel_grid(scene.width, scene.height)
    bx, by = xs[lay.ib] - np.float32(ix), ys[lay.ib] - np.float32(iy)
    r = np.sqrt(bx * bx + by * by)
    iris = _iris_layer(rng, scene, patient, bx, by, r, (pcx - ix, pcy - iy))
    i_g = _within(lay.gbox, lay.ib)
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
    return r, sheen


def _paint_pupil(rng: np.random.Generator, scene: _Scene, globe: np.ndarray, lid_sh: np.ndarray, sheen: np.ndarray,
                 lay: _Layout, opacity: _Opacity | None) -> np.ndarray:
    """Paint the pupil (and the lens behind it) onto ``globe``; returns the distance from its centre in ``lay.pb``."""
    xs, ys = _pixel_grid(scene.width, scene.height)
    qx, qy = xs[lay.pb] - np.float32(lay.pupil[0]), ys[lay.pb] - np.float32(lay.pupil[1])
    pr = np.sqrt(qx * qx + qy * qy)
    pupil_a = np.clip(scene.rp - pr + 0.5, 0, 1)
    pupil = _pupil_layer(rng, scene, qx, qy, pr, opacity)
    pupil *= lid_sh[_within(lay.gbox, lay.pb)][..., None]
    pupil += sheen[_within(lay.ib, lay.pb)][..., None]
    sub = globe[_within(lay.gbox, lay.pb)]
    sub[:] = cv2.blendLinear(sub, pupil, 1 - pupil_a, pupil_a)
    return pr


def _paint_highlights(rng: np.random.Generator, scene: _Scene, globe: np.ndarray, lay: _Layout, r: np.ndarray,
                      fine: float) -> None:
    """Paint the corneal reflections onto ``globe``, only over the cornea (``r``: distance from the iris centre)."""
    R = scene.R
    hl = np.zeros((scene.height, scene.width), np.uint8)
    _highlights(rng, scene, hl)
    hlf = hl[lay.ib].astype(np.float32) * np.float32(1 / 255)
    hlf = 0.8 * _blur(hlf, 0.45 * fine) + 0.3 * _blur(hlf, 2.5 * fine)
    hlf = np.clip(hlf * _smoothstep(R * 1.02, R * 0.96, r), 0, 1)
    sub = globe[_within(lay.gbox, lay.ib)]
    sub += (1 - sub) * hlf[..., None]


def _paint_lashes(rng: np.random.Generator, scene: _Scene, patient: _Patient, img: np.ndarray) -> np.ndarray:
    """Paint the lashes onto ``img``; returns their coverage (H, W)."""
    W, H = scene.width, scene.height
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
    return la


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
    # OpenCV's type stubs lack the array-and-scalar form of cv2.max, which OpenCV documents and supports.
    out = cv2.convertScaleAbs(cv2.max(img, 0.0))  # type: ignore[call-overload]
    # A mild tone curve, as phone cameras apply, through a lookup table.
    gamma = rng.uniform(0.88, 1.12)
    lut = np.clip(((np.arange(256) / 255.0) ** gamma) * 255 + 0.5, 0, 255).astype(np.uint8)
    quality = int(rng.integers(70, 96))
    return cv2.LUT(out, lut), quality
