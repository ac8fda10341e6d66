"""Real-photograph variation of rendered eyes: seeded bytes, masks that move with the image, inputs untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from models.synthetic import render_eye
from models.training.variation import VARIATIONS, vary

SIZE = (256, 192)


@pytest.fixture(scope="module")
def eye():
    return render_eye(4321, size=SIZE)


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_same_seed_same_bytes_and_the_render_is_untouched(eye):
    before = _digest(eye.image)
    masks_before = {k: _digest(v) for k, v in eye.masks.items()}
    a = [vary(eye.image, eye.masks, s) for s in range(6)]
    b = [vary(eye.image, eye.masks, s) for s in range(6)]
    assert [_digest(v.image) for v in a] == [_digest(v.image) for v in b]
    assert [v.applied for v in a] == [v.applied for v in b]
    assert len({_digest(v.image) for v in a}) == 6  # different seeds, different photographs
    assert _digest(eye.image) == before
    assert {k: _digest(v) for k, v in eye.masks.items()} == masks_before


def test_nothing_chosen_changes_nothing(eye):
    v = vary(eye.image, eye.masks, 3, only=())
    np.testing.assert_array_equal(v.image, eye.image)
    assert v.applied == {}
    np.testing.assert_array_equal(v.masks["pupil"] > 0, eye.masks["pupil"] > 0)


def test_oblique_squeezes_the_pupil_about_the_iris_centre(eye):
    v = vary(eye.image, eye.masks, 5, only=("oblique",))
    squeeze = v.applied["oblique"]["squeeze"]
    ys, xs = np.nonzero(eye.masks["pupil"] > 0)
    ys2, xs2 = np.nonzero(v.masks["pupil"] > 0)
    # Width shrinks by the squeeze factor, height stays (within a pixel of rasterisation).
    assert (xs2.max() - xs2.min() + 1) == pytest.approx((xs.max() - xs.min() + 1) * squeeze, abs=1.5)
    assert (ys2.max() - ys2.min()) == (ys.max() - ys.min())


def test_small_and_macro_resize_the_masks_with_the_image(eye):
    v = vary(eye.image, eye.masks, 8, only=("small",))
    assert list(v.image.shape[1::-1]) == v.applied["small"]["size"]
    assert all(m.shape == v.image.shape[:2] for m in v.masks.values())
    m = vary(eye.image, eye.masks, 8, only=("macro",))
    half = m.applied["macro"]["half_height"]
    assert m.image.shape[0] == round(2 * half)
    # A macro frame is 0.9-1.6 iris radii tall above and below the centre (radius from the mask's area).
    r_iris = np.sqrt((eye.masks["iris"] > 0).sum() / np.pi)
    assert 0.9 * 2 * r_iris - 1 <= m.image.shape[0] <= 1.6 * 2 * r_iris + 1
    assert (m.masks["iris"] > 0).any()


def test_every_variation_runs_alone(eye):
    for name in VARIATIONS:
        v = vary(eye.image, eye.masks, 11, only=(name,))
        assert name in v.applied, name
        assert v.image.dtype == np.uint8
        assert (v.masks["pupil"] > 0).any(), name


def test_bad_input_is_refused(eye):
    with pytest.raises(ValueError, match="Unknown variation"):
        vary(eye.image, eye.masks, 1, only=("sepia",))
    with pytest.raises(TypeError, match="RGB uint8"):
        vary(eye.image.astype(np.float32), eye.masks, 1)
    with pytest.raises(TypeError, match="seed"):
        vary(eye.image, eye.masks, -1)
    with pytest.raises(ValueError, match="masks"):
        vary(eye.image, {"pupil": eye.masks["pupil"]}, 1)
