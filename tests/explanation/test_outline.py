"""The region outline: circles where the region says, nothing for a region not found, the input untouched."""

from __future__ import annotations

import numpy as np
import pytest

from components.explanation.outline import IRIS_COLOUR, PUPIL_COLOUR, draw_region


def test_circles_lie_where_the_region_says():
    pixels = np.zeros((200, 300, 3), np.uint8)
    region = {"found": True, "center": [100.0, 80.0], "radius": 20.0, "iris_center": [100.0, 80.0],
              "iris_radius": 50.0}
    out = draw_region(pixels, region, scale=1.5)
    # At scale 1.5 the pupil circle passes through (150 + 30, 120) and the iris circle through (150 + 75, 120).
    # Within a pixel of the circle (rasterisation), in its full colour.
    assert tuple(out[119:122, 179:182].reshape(-1, 3).max(0)) == PUPIL_COLOUR
    assert tuple(out[119:122, 224:227].reshape(-1, 3).max(0)) == IRIS_COLOUR
    assert tuple(out[120, 150]) == (0, 0, 0)  # the centre stays as it was
    assert not pixels.any()  # the input is not drawn on


def test_a_region_not_found_draws_nothing():
    pixels = np.full((50, 50, 3), 7, np.uint8)
    np.testing.assert_array_equal(draw_region(pixels, {"found": False, "center": None}), pixels)
    with pytest.raises(TypeError):
        draw_region(pixels.astype(np.float32), {"found": False})
    with pytest.raises(ValueError, match="scale"):
        draw_region(pixels, {"found": False}, scale=0)


def test_ellipses_lie_where_the_region_says():
    pixels = np.zeros((200, 300, 3), np.uint8)
    # A pupil 40 px wide and 20 px tall (angle 0: the first axis is horizontal), an iris ellipse
    # 100 x 60 turned by 90 degrees (so 60 wide and 100 tall), both centred at (100, 80), drawn at scale 1.
    region = {"found": True, "center": [100.0, 80.0], "radius": 14.1, "axes": [40.0, 20.0], "angle": 0.0,
              "iris_center": [100.0, 80.0], "iris_radius": 38.7, "iris_axes": [100.0, 60.0], "iris_angle": 90.0}
    out = draw_region(pixels, region)
    assert tuple(out[79:82, 119:122].reshape(-1, 3).max(0)) == PUPIL_COLOUR  # (100 + 20, 80)
    assert tuple(out[69:72, 99:102].reshape(-1, 3).max(0)) == PUPIL_COLOUR  # (100, 80 - 10)
    assert tuple(out[29:32, 99:102].reshape(-1, 3).max(0)) == IRIS_COLOUR  # (100, 80 - 50)
    assert tuple(out[79:82, 129:132].reshape(-1, 3).max(0)) == IRIS_COLOUR  # (100 + 30, 80)
    # Where a circle of the same mean radius would pass, the ellipse does not.
    assert not out[79:82, 113:116].any()
