"""Drawing the region the attention check used (pupil and iris circles) on a picture, so a wrong finder shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

__all__ = ["IRIS_COLOUR", "PUPIL_COLOUR", "draw_region"]

PUPIL_COLOUR = (0, 255, 0)  # RGB
IRIS_COLOUR = (0, 200, 255)
_SHIFT = 4  # sub-pixel bits for OpenCV drawing


def _point(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    x, y = value
    return float(x), float(y)


def draw_region(pixels: np.ndarray, region: Mapping[str, Any], *, scale: float = 1.0) -> np.ndarray:
    """A copy of ``pixels`` with the region's pupil (green) and iris (blue) outlines drawn on it.

    Each is an ellipse where the region gives one (``axes`` and ``angle``, ``iris_axes`` and
    ``iris_angle``: the learned finder's), else a circle.

    ``region`` is :meth:`components.lens.finder.LensRegion.as_dict` (``center``, ``radius``,
    ``iris_center``, ``iris_radius``, ``found`` and the optional ellipses), measured on a picture
    ``scale`` times smaller than ``pixels`` (the check may run on a smaller copy). A region not
    found draws nothing.

    Raises:
        TypeError: ``pixels`` is not an RGB uint8 array or ``region`` not a mapping.
        ValueError: ``scale`` is not positive.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise TypeError("pixels must be an RGB uint8 numpy array of shape (H, W, 3).")
    if not isinstance(region, Mapping):
        raise TypeError(f"region must be a mapping (LensRegion.as_dict()), got {type(region).__name__}.")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}.")
    out = np.ascontiguousarray(pixels.copy())
    if not region.get("found"):
        return out
    thickness = max(1, round(min(out.shape[:2]) / 300))
    one = 1 << _SHIFT
    for prefix, colour in (("iris_", IRIS_COLOUR), ("", PUPIL_COLOUR)):
        centre, radius = _point(region.get(f"{prefix}center")), region.get(f"{prefix}radius")
        if centre is None or radius is None or radius <= 0:
            continue
        axes = _point(region.get(f"{prefix}axes"))
        c = (round(centre[0] * scale * one), round(centre[1] * scale * one))
        if axes is not None and min(axes) > 0:
            # The learned finder's ellipse (full axis lengths; cv2.ellipse takes half lengths).
            half = (round(axes[0] / 2 * scale * one), round(axes[1] / 2 * scale * one))
            angle = float(region.get(f"{prefix}angle") or 0.0)
            cv2.ellipse(out, c, half, angle, 0, 360, colour, thickness, cv2.LINE_8, _SHIFT)
        else:
            cv2.circle(out, c, round(float(radius) * scale * one), colour, thickness, cv2.LINE_8, _SHIFT)
    return out
