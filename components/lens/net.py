"""A small learned lens finder: a U-Net that outlines the pupil and the iris, and the ellipse fitted to its pupil.

The net takes a picture resized to a square, standardised per image so exposure and white
balance matter less, and gives pupil and iris probabilities on a grid half the input's side.
:func:`locate` uses it twice: on the whole photograph to find the eye, then on a window around
that eye, where the pupil is large; the pupil is the largest confident blob there, and an ellipse
fitted to its outline, mapped back to the photograph's own pixels, is the answer. When the blob is
missing, too small, not round enough or not inside an iris, the answer is "lens not found" with
the reason, so an unsure finder misses rather than draws a wrong circle.

Weights: ``models/weights/lens_finder.pt`` (state dict, loaded with ``weights_only=True``), trained by
``python -m models.training.lens_net`` on rendered eyes with ``models.training.variation`` (models/README.md).
:func:`components.lens.finder.find_lens` uses this finder by default for external photographs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

__all__ = ["CROP_SCALE", "CROP_SIDE", "INPUT_SIDE", "LENS_FINDER_PATH", "EyeFit", "LensNet", "PupilFit", "fit_pupil",
           "load_lens_net", "locate", "predict_masks", "to_input"]

INPUT_SIDE = 96
LENS_FINDER_PATH = Path(__file__).resolve().parents[2] / "models" / "weights" / "lens_finder.pt"
PROBABILITY = 0.5  # a grid cell belongs to the pupil (iris) above this
MIN_PUPIL_CELLS = 4  # fewer pupil cells on the 48x48 grid: too small to place a circle
MIN_SOLIDITY = 0.85  # blob area over its convex hull: a ragged blob is not a pupil
MIN_MEAN_PROBABILITY = 0.75  # the blob's mean pupil probability: below it the net is unsure
MIN_IRIS_SUPPORT = 0.6  # share of the pupil ellipse's ring (1.0-1.4 radii) the net calls iris (or pupil)
MIN_RING_VISIBLE = 0.35  # share of that ring that must lie inside the photograph for the iris to be judged
MAX_AXIS_RATIO = 3.0  # pupils seen obliquely are ellipses, but not slivers


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LensNet(nn.Module):
    """A four-level U-Net: (N, 3, 96, 96) standardised RGB to (N, 2, 48, 48) logits (pupil, iris)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.enc1, self.enc2, self.enc3 = _block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.bottom = _block(4 * w, 6 * w)
        self.dec3 = _block(6 * w + 4 * w, 4 * w)
        self.dec2 = _block(4 * w + 2 * w, 2 * w)
        self.head = nn.Conv2d(2 * w, 2, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the pupil and the iris on a grid half the input's side."""
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottom(self.pool(e3))
        up = nn.functional.interpolate
        d3 = self.dec3(torch.cat([up(b, scale_factor=2.0, mode="nearest"), e3], 1))
        d2 = self.dec2(torch.cat([up(d3, scale_factor=2.0, mode="nearest"), e2], 1))
        return self.head(d2)


def to_input(images: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 photographs to the net's standardised (N, 3, 96, 96) batch (whole image, squashed to a square).

    Raises:
        TypeError: an image is not an RGB uint8 array.
    """
    batch = np.empty((len(images), INPUT_SIDE, INPUT_SIDE, 3), np.float32)
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError("Every image must be an RGB uint8 numpy array of shape (H, W, 3).")
        h, w = image.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) >= INPUT_SIDE else cv2.INTER_LINEAR
        batch[i] = cv2.resize(image, (INPUT_SIDE, INPUT_SIDE), interpolation=interp)
    flat = batch.reshape(len(images), -1, 3)
    mean = flat.mean(1)[:, None, None, :]
    std = flat.std(1)[:, None, None, :] + 8.0
    return torch.from_numpy((batch - mean) / std).permute(0, 3, 1, 2).contiguous()


def load_lens_net(path: str | os.PathLike[str] | None = None) -> LensNet:
    """The trained finder (``weights_only`` loading); None loads the shipped weights.

    Raises:
        FileNotFoundError: the weights file does not exist.
        ValueError: the file does not hold this net's weights.
    """
    path = Path(path) if path is not None else LENS_FINDER_PATH
    if not path.is_file():
        raise FileNotFoundError(
            "The lens finder's weights are missing; train them with python -m models.training.lens_net.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError("The lens finder file holds no state_dict.")
    net = LensNet(int(payload.get("width", 16)))
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise ValueError("The lens finder file's weights do not fit the lens finder net.") from None
    # Channels-last convolutions run about twice as fast on the CPU at batch 1 (6.8 against 12.2 ms
    # a look, measured on the 2-core machine), with the same outputs to float rounding.
    return _fold_batch_norms(net.eval()).to(memory_format=torch.channels_last)


def _fold_batch_norms(net: LensNet) -> LensNet:
    """The inference net with each BatchNorm folded into the convolution before it (same outputs, fewer steps)."""
    with torch.no_grad():
        for block in (net.enc1, net.enc2, net.enc3, net.bottom, net.dec3, net.dec2):
            for i in (0, 3):
                conv, bn = block[i], block[i + 1]
                if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                        and bn.running_var is not None and bn.running_mean is not None):
                    raise TypeError("The lens finder's blocks must be Conv2d then BatchNorm2d with running statistics.")
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                folded = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1)  # as _block makes them
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                folded.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
                block[i], block[i + 1] = folded, nn.Identity()
    return net


def predict_masks(net: LensNet, images: list[np.ndarray]) -> np.ndarray:
    """Pupil and iris probabilities, (N, 2, 48, 48) float32.

    Raises:
        TypeError: an image is not an RGB uint8 array.
    """
    with torch.inference_mode():
        x = to_input(images).contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(net(x)).contiguous().numpy()


@dataclass(frozen=True)
class PupilFit:
    """The pupil ellipse in the photograph's pixels, or why there is none."""

    found: bool
    center: tuple[float, float] | None = None  # (x, y)
    axes: tuple[float, float] | None = None  # full lengths of the ellipse's axes, px
    angle: float = 0.0  # degrees, as cv2.fitEllipse gives
    confidence: float = 0.0
    reason: str = ""

    @property
    def radius(self) -> float | None:
        """Radius of the circle of the same area."""
        return None if self.axes is None else math.sqrt(self.axes[0] * self.axes[1]) / 2

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The ellipse as a bool mask of ``shape`` (all False when not found)."""
        out = np.zeros(shape, np.uint8)
        if self.found and self.center is not None and self.axes is not None:
            cv2.ellipse(out, ((self.center[0], self.center[1]), self.axes, self.angle), 1, thickness=-1)
        return out.astype(bool)


def _no(reason: str, confidence: float = 0.0) -> PupilFit:
    return PupilFit(found=False, confidence=confidence, reason=reason)


def fit_pupil(probabilities: np.ndarray, shape: tuple[int, int], visible: np.ndarray | None = None) -> PupilFit:
    """The pupil ellipse from one photograph's (2, G, G) probabilities, in a photograph of ``shape`` (h, w).

    ``visible`` (G, G) marks the cells that show the photograph (a window cut past its edge shows
    smeared edge pixels elsewhere): the iris round the pupil is looked for there only, and at
    least ``MIN_RING_VISIBLE`` of the ring must be seen.

    Raises:
        ValueError: ``probabilities`` is not (2, G, G).
    """
    if probabilities.ndim != 3 or probabilities.shape[0] != 2 or probabilities.shape[1] != probabilities.shape[2]:
        raise ValueError(f"Expected probabilities of shape (2, G, G), got {probabilities.shape}.")
    pupil, iris = probabilities
    g = pupil.shape[0]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((pupil > PROBABILITY).astype(np.uint8), connectivity=8)
    if count <= 1:
        return _no("No pupil was found: nothing in the photograph looks like a pupil to the lens finder.")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = labels == best
    cells = int(blob.sum())
    if cells < MIN_PUPIL_CELLS:
        return _no("No pupil was found: the only candidate is too small to place a circle.")
    confidence = float(pupil[blob].mean())
    contours, _ = cv2.findContours(blob.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(contour))
    solidity = cells / max(hull + len(contour) / 2, 1.0)  # pixel count vs polygon area: add half the outline
    if confidence < MIN_MEAN_PROBABILITY:
        return _no("No pupil was found with confidence: the lens finder is unsure where the pupil is.", confidence)
    if solidity < MIN_SOLIDITY or len(contour) < 5:
        return _no("No pupil was found: the candidate is not round enough to be a pupil.", confidence)
    (ex, ey), (a1, a2), angle = cv2.fitEllipse(contour.astype(np.float32))
    # The fitted outline runs through cell centres: half a cell inside the blob's edge.
    a1, a2 = a1 + 1.0, a2 + 1.0
    if max(a1, a2) > MAX_AXIS_RATIO * max(min(a1, a2), 1e-6):
        return _no("No pupil was found: the candidate is too elongated to be a pupil.", confidence)
    ring = np.zeros((g, g), np.uint8)
    cv2.ellipse(ring, ((ex, ey), (a1 * 1.4, a2 * 1.4), angle), 1, thickness=-1)
    cv2.ellipse(ring, ((ex, ey), (a1, a2), angle), 0, thickness=-1)
    ring_cells = ring.astype(bool)
    if ring_cells.any():
        seen = ring_cells if visible is None else ring_cells & visible
        if seen.sum() < MIN_RING_VISIBLE * ring_cells.sum():
            return _no("No pupil was found: too little of the photograph shows round the candidate to see an iris.",
                       confidence)
        support = float(((iris > PROBABILITY) | (pupil > PROBABILITY))[seen].mean())
        if support < MIN_IRIS_SUPPORT:
            return _no("No pupil was found: the candidate is not surrounded by an iris.", confidence)
    h, w = shape
    sx, sy = w / g, h / g
    # Grid to photograph: an anisotropic scale, so the ellipse is mapped by its axis end points.
    t = math.radians(angle)
    ax1 = (a1 / 2 * math.cos(t) * sx, a1 / 2 * math.sin(t) * sy)
    ax2 = (-a2 / 2 * math.sin(t) * sx, a2 / 2 * math.cos(t) * sy)
    centre = ((ex + 0.5) * sx, (ey + 0.5) * sy)
    # The image of an ellipse under a diagonal scale is an ellipse; refit it from points on it.
    phis = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    pts = np.stack([centre[0] + np.cos(phis) * ax1[0] + np.sin(phis) * ax2[0],
                    centre[1] + np.cos(phis) * ax1[1] + np.sin(phis) * ax2[1]], 1).astype(np.float32)
    (cx, cy), (b1, b2), beta = cv2.fitEllipse(pts)
    return PupilFit(found=True, center=(float(cx), float(cy)), axes=(float(b1), float(b2)), angle=float(beta),
                    confidence=confidence)


# ---- The two looks ---------------------------------------------------------------------------
CROP_SCALE = 1.6  # the second look's window: this many iris radii either side of the first look's iris centre
CROP_SIDE = 2 * INPUT_SIDE  # the window is cut at this many pixels, then fed like any photograph
MIN_IRIS_CELLS = 6  # the first look's eye (iris or pupil cells on its grid): fewer and there is no eye to look at
PUPIL_TO_IRIS = (0.1, 0.9)  # the pupil's radius over the iris's, on the second look


@dataclass(frozen=True)
class EyeFit:
    """The pupil and the iris the finder settled on, in the photograph's pixels, or why there is none."""

    pupil: PupilFit
    iris_center: tuple[float, float] | None = None
    iris_axes: tuple[float, float] | None = None
    iris_angle: float = 0.0

    @property
    def found(self) -> bool:
        """A pupil was placed."""
        return self.pupil.found


def _largest_blob(mask: np.ndarray) -> np.ndarray | None:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _window(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float]:
    """The square window of ``side`` px centred on (cx, cy), at CROP_SIDE px (edges smeared outward), and its scale."""
    # A big photograph is first shrunk so the window is cut from at most twice its output size (no aliasing).
    pre = min(1.0, 2 * CROP_SIDE / max(side, 1.0))
    if pre < 1.0:
        image = cv2.resize(image, (max(1, round(image.shape[1] * pre)), max(1, round(image.shape[0] * pre))),
                           interpolation=cv2.INTER_AREA)
        cx, cy, side = cx * pre, cy * pre, side * pre
    scale = CROP_SIDE / side
    m = np.array([[scale, 0, CROP_SIDE / 2 - cx * scale], [0, scale, CROP_SIDE / 2 - cy * scale]], np.float32)
    crop = cv2.warpAffine(image, m, (CROP_SIDE, CROP_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, scale * pre


def _visible_cells(g: int, cx: float, cy: float, scale: float, w: int, h: int) -> np.ndarray:
    """(G, G): the window's grid cells whose centres fall inside the photograph (w x h) it was cut from."""
    centres = (np.arange(g) + 0.5) * CROP_SIDE / g - CROP_SIDE / 2
    xs, ys = cx + centres / scale, cy + centres / scale
    return ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]


def _iris_in_window(probabilities: np.ndarray, pupil: PupilFit) -> tuple[tuple[float, float], tuple[float, float],
                                                                          float] | None:
    """The iris ellipse (centre, full axes, angle) on the second look, in window pixels, around the pupil."""
    g = probabilities.shape[1]
    eye = _largest_blob((probabilities[0] > PROBABILITY) | (probabilities[1] > PROBABILITY))
    if eye is None or pupil.center is None:
        return None
    contours, _ = cv2.findContours(eye.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    if len(contour) < 5:
        return None
    (ex, ey), (a1, a2), angle = cv2.fitEllipse(contour.astype(np.float32))
    cell = CROP_SIDE / g
    return ((ex + 0.5) * cell, (ey + 0.5) * cell), ((a1 + 1.0) * cell, (a2 + 1.0) * cell), float(angle)


def locate(net: LensNet, image: np.ndarray) -> EyeFit:
    """Find the pupil and the iris in one RGB uint8 photograph in two looks.

    The first look takes the whole photograph and finds the eye (iris and pupil cells); the
    second takes a window of ``CROP_SCALE`` iris radii around it, where even a pupil a few pixels
    across in a half-face photograph is large, and fits the pupil ellipse there. Each look can
    answer "not found" with its reason; the pupil must also sit inside the first look's eye and
    be of a pupil's size for its iris.

    Raises:
        TypeError: ``image`` is not an RGB uint8 array.
    """
    first = predict_masks(net, [image])[0]  # refuses anything but an RGB uint8 array
    h, w = image.shape[:2]
    g = first.shape[1]
    eye = _largest_blob((first[0] > PROBABILITY) | (first[1] > PROBABILITY))
    if eye is None or int(eye.sum()) < MIN_IRIS_CELLS:
        return EyeFit(_no("No eye was found: nothing in the photograph looks like an iris to the lens finder."))
    ys, xs = np.nonzero(eye)
    sx, sy = w / g, h / g
    cx, cy = (float(xs.mean()) + 0.5) * sx, (float(ys.mean()) + 0.5) * sy
    radius = math.sqrt(xs.size * sx * sy / math.pi)
    crop, scale = _window(image, cx, cy, 2 * CROP_SCALE * radius)
    second = predict_masks(net, [crop])[0]
    found = fit_pupil(second, (CROP_SIDE, CROP_SIDE), _visible_cells(second.shape[1], cx, cy, scale, w, h))
    if not found.found or found.center is None or found.axes is None:
        return EyeFit(found)
    iris = _iris_in_window(second, found)

    def back(p: tuple[float, float]) -> tuple[float, float]:
        return cx + (p[0] - CROP_SIDE / 2) / scale, cy + (p[1] - CROP_SIDE / 2) / scale

    centre = back(found.center)
    pupil = PupilFit(True, centre, (found.axes[0] / scale, found.axes[1] / scale), found.angle, found.confidence)
    px, py = int(np.clip(centre[0] / sx, 0, g - 1)), int(np.clip(centre[1] / sy, 0, g - 1))
    if not eye[py, px]:
        return EyeFit(_no("No pupil was found: the candidate lies outside the eye the lens finder saw.",
                          found.confidence))
    if iris is None:
        return EyeFit(_no("No pupil was found: the lens finder saw no iris round it.", found.confidence))
    iris_axes = (iris[1][0] / scale, iris[1][1] / scale)
    ratio = (pupil.radius or 0.0) / max(math.sqrt(iris_axes[0] * iris_axes[1]) / 2, 1e-6)
    if not PUPIL_TO_IRIS[0] <= ratio <= PUPIL_TO_IRIS[1]:
        return EyeFit(_no("No pupil was found: the candidate is not of a pupil's size for its iris.",
                          found.confidence))
    return EyeFit(pupil, back(iris[0]), iris_axes, iris[2])
