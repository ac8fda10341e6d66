"""Overlay pixels against values worked out by hand; colours are RGB."""

from __future__ import annotations

import numpy as np
import pytest

from components.explanation.overlay import COLORMAPS, blend, colorbar, colorize, resize_map, three_panel


def test_jet_is_rgb_with_red_at_the_hot_end():
    lut = colorize(np.linspace(0, 1, 256, dtype=np.float32)[None, :], "jet")[0]
    assert tuple(lut[-1]) == (128, 0, 0)  # matplotlib's jet ends in dark red (0.5, 0, 0)
    assert tuple(lut[0]) == (0, 0, 128)  # and starts in dark blue: a BGR leak would swap these
    assert lut[-1, 0] > lut[-1, 2]
    assert lut[0, 2] > lut[0, 0]


def test_every_offered_colormap_is_a_256_entry_rgb_table():
    assert {"jet", "turbo", "hot", "inferno", "magma", "plasma", "viridis", "cividis", "bone"} <= set(COLORMAPS)
    for name in COLORMAPS:
        ramp = colorize(np.linspace(0, 1, 256, dtype=np.float32)[None, :], name)[0]
        assert ramp.dtype == np.uint8
        assert ramp.shape == (256, 3)
    # hot goes black -> red -> yellow -> white (starts at 0.0416 red = 11): red rises first.
    hot = colorize(np.array([[0.0, 0.3, 1.0]], np.float32), "hot")[0]
    assert tuple(hot[0]) == (11, 0, 0)
    assert hot[1, 0] > hot[1, 1]
    assert tuple(hot[2]) == (255, 255, 255)


def test_blend_by_hand_for_alpha_0_half_and_1():
    image = np.array([[[100, 50, 200], [0, 0, 0]],
                      [[255, 255, 255], [10, 20, 30]]], np.uint8)
    cam = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)  # same size: no resampling
    heat = colorize(cam, "jet")
    assert tuple(heat[0, 0]) == (128, 0, 0)
    assert tuple(heat[0, 1]) == (0, 0, 128)
    np.testing.assert_array_equal(blend(image, cam, alpha=0.0), image)
    np.testing.assert_array_equal(blend(image, cam, alpha=1.0), heat)
    half = blend(image, cam, alpha=0.5)
    # round(0.5 * image + 0.5 * heat), worked out: (100+128)/2=114, 50/2=25, 200/2=100; (0+0)/2, (0+128)/2=64
    assert tuple(half[0, 0]) == (114, 25, 100)
    assert tuple(half[0, 1]) == (0, 0, 64)
    assert tuple(half[1, 0]) == (192, 128, 128)  # (255+128)/2 = 191.5 -> 192, 255/2 = 127.5 -> 128
    assert tuple(half[1, 1]) == (5, 10, 79)  # (30+128)/2 = 79
    quarter = blend(image, cam, alpha=0.25)
    assert tuple(quarter[0, 0]) == (107, 38, 150)  # 0.75*100+0.25*128=107, 37.5->38, 150


def test_blend_keeps_the_image_size_and_checks_inputs():
    image = np.zeros((30, 50, 3), np.uint8)
    assert blend(image, np.ones((7, 7), np.float32), alpha=0.3).shape == (30, 50, 3)
    with pytest.raises(ValueError, match="alpha must lie in"):
        blend(image, np.ones((7, 7), np.float32), alpha=1.5)
    with pytest.raises(ValueError, match="Unknown colormap 'rainbow'"):
        blend(image, np.ones((7, 7), np.float32), colormap="rainbow")
    with pytest.raises(ValueError, match="NaN"):
        blend(image, np.full((7, 7), np.nan, np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        blend(np.zeros((30, 50), np.uint8), np.ones((7, 7), np.float32))


def test_map_upsampling_is_bilinear_with_centred_pixels():
    cam = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    up = resize_map(cam, (4, 2))
    # Output x centres map to source x = (x + 0.5) / 2 - 0.5: -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_colorbar_runs_hot_at_the_top():
    bar = colorbar(256, 4, "jet")
    assert tuple(bar[0, 0]) == (128, 0, 0)
    assert tuple(bar[-1, 0]) == (0, 0, 128)


def test_three_panel_places_original_heatmap_and_overlay_side_by_side():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    cam = rng.random((7, 7), dtype=np.float32)
    panel = three_panel(image, cam, alpha=0.4, colormap="viridis", caption="Cataract 91%")
    # Find the original photograph inside the figure: its top-left pixel row must appear exactly.
    rows = np.where((panel == image[0, 0]).all(axis=2))
    found = False
    for y, x in zip(*rows, strict=True):
        inside = y + 300 <= panel.shape[0] and x + 400 <= panel.shape[1]
        if inside and np.array_equal(panel[y:y + 300, x:x + 400], image):
            found = True
            break
    assert found, "the original photograph is not in the figure unchanged"
    expected = blend(image, cam, alpha=0.4, colormap="viridis")
    # The overlay panel is the last 400-pixel-wide block at the same height.
    right = panel[y:y + 300]
    hits = [x2 for x2 in range(right.shape[1] - 400, x + 400, -1) if np.array_equal(right[:, x2:x2 + 400], expected)]
    assert hits, "the overlay panel does not equal blend()"


def test_three_panel_caps_each_panel_at_max_side():
    image = np.zeros((1822, 2734, 3), np.uint8)
    panel = three_panel(image, np.zeros((7, 7), np.float32), max_side=512)
    assert panel.shape[1] < 3 * 512 + 300
    assert panel.shape[0] < 512
