"""The learned lens finder: the ellipse read off its grid, its refusals, and the shipped net on eyes and non-eyes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.attention import iou
from components.lens_net import INPUT_SIDE, fit_pupil, load_lens_net, to_input

G = INPUT_SIDE // 2


def _grid(centre, axes, angle=0.0, iris_scale=2.2) -> np.ndarray:
    """Probabilities (2, G, G): a pupil ellipse and an iris ring around it."""
    out = np.zeros((2, G, G), np.uint8)
    cv2.ellipse(out[1], (centre, (axes[0] * iris_scale, axes[1] * iris_scale), angle), 1, thickness=-1)
    cv2.ellipse(out[0], (centre, axes, angle), 1, thickness=-1)
    out[1][out[0] > 0] = 0
    return out.astype(np.float32)


def _two_cells() -> np.ndarray:
    out = np.zeros((2, G, G), np.float32)
    out[0, 20, 20:22] = 1.0
    return out


def test_ellipse_maps_back_onto_the_photograph():
    # A pupil 10 x 14 grid cells on a 48-cell grid of a 400 x 300 photograph: 83 x 87.5 px.
    probabilities = _grid((20.0, 24.0), (10.0, 14.0))
    fit = fit_pupil(probabilities, (300, 400))
    assert fit.found
    truth = np.zeros((300, 400), np.uint8)
    sx, sy = 400 / G, 300 / G
    cv2.ellipse(truth, ((20.5 * sx, 24.5 * sy), (11 * sx, 15 * sy), 0.0), 1, thickness=-1)
    assert iou(fit.mask((300, 400)), truth.astype(bool)) > 0.9
    assert fit.center == pytest.approx((20.5 * sx, 24.5 * sy), abs=sx)


@pytest.mark.parametrize(("probabilities", "reason"), [
    (np.zeros((2, G, G), np.float32), "nothing in the photograph"),
    (_two_cells(), "too small"),
    (_grid((20.0, 20.0), (30.0, 6.0)), "too elongated"),
    (_grid((20.0, 20.0), (10.0, 10.0), iris_scale=1.0), "not surrounded by an iris"),
    (_grid((20.0, 20.0), (10.0, 10.0)) * 0.6, "unsure"),
])
def test_unsure_answers_are_lens_not_found_with_a_reason(probabilities, reason):
    fit = fit_pupil(probabilities, (200, 200))
    assert not fit.found
    assert reason in fit.reason
    assert not fit.mask((200, 200)).any()


def test_input_is_standardised_per_image():
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    x = to_input([image])
    brighter = to_input([np.clip(image.astype(int) // 2 + 60, 0, 255).astype(np.uint8)])
    assert x.shape == (1, 3, INPUT_SIDE, INPUT_SIDE)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-4)
    # Halving the contrast and lifting the exposure barely changes what the net sees.
    assert float((x - brighter).abs().mean()) < 0.1
    with pytest.raises(TypeError):
        to_input([image.astype(np.float32)])


def test_weights_load_only_as_weights(tmp_path):
    path = tmp_path / "finder.pt"
    import torch

    torch.save({"state_dict": {"bogus": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="do not fit"):
        load_lens_net(path)
    with pytest.raises(FileNotFoundError):
        load_lens_net(tmp_path / "missing.pt")


def test_training_samples_match_their_masks():
    from models.lens_net_train import make_samples

    images, targets = make_samples(2, seed=3)
    assert images.shape == (4, INPUT_SIDE, INPUT_SIDE, 3)
    assert targets.shape == (4, 2, G, G)
    assert float(targets.min()) >= 0.0
    assert float(targets.max()) <= 1.0
    # Pupil and iris never overlap (the generator's iris mask excludes the pupil), up to resampling.
    assert float((targets[:, 0] * targets[:, 1]).max()) < 0.5
    # The same seed gives the same samples.
    again, _ = make_samples(2, seed=3)
    np.testing.assert_array_equal(images, again)
