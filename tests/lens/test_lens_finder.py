"""The learned lens finder: the ellipse read off its grid, its refusals, and the shipped net on eyes and non-eyes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.base import config
from components.lens.attention import iou
from components.lens.net import INPUT_SIDE, fit_pupil, load_lens_net, to_input

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


def test_the_iris_is_looked_for_where_the_window_shows_the_photograph():
    # A big pupil in the window's corner; past the photograph's edge (3 rows, 3 columns) the net
    # saw smeared edge pixels and no iris.
    probabilities = _grid((9.0, 9.0), (14.0, 14.0))
    visible = np.ones((G, G), bool)
    visible[:3, :] = False
    visible[:, :3] = False
    probabilities[1][~visible] = 0.0
    assert "not surrounded by an iris" in fit_pupil(probabilities, (200, 200)).reason
    fit = fit_pupil(probabilities, (200, 200), visible)
    assert fit.found
    assert fit.center == pytest.approx((9.5 * 200 / G, 9.5 * 200 / G), abs=200 / G)
    # Iris missing where the photograph does show: still refused.
    bare = probabilities.copy()
    bare[1] = 0.0
    assert "not surrounded by an iris" in fit_pupil(bare, (200, 200), visible).reason
    # Too little of the ring inside the photograph to judge: refused, with its own reason.
    scarce = np.zeros((G, G), bool)
    scarce[9:, 9:] = True
    assert "too little of the photograph" in fit_pupil(probabilities, (200, 200), scarce).reason


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
    from models.training.lens_net import make_samples

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


# ---- The shipped net, through components.lens.finder ---------------------------------------------
# Render seeds 940000 on: never used for training (5_000_000 on) or for the benchmark (930000 on).

def _varied(seed: int, only=None, size=(320, 240)):
    from models.synthetic import render_eye
    from models.training.variation import vary

    eye = render_eye(seed, size=size)
    v = vary(eye.image, eye.masks, seed, only=only)
    return v.image, v.masks["pupil"] > 0


def _learned(image):
    from components.lens import finder as lens

    return lens.find_lens(image, "external", finder=lens.LEARNED)


def test_shipped_finder_outlines_varied_eyes_and_draws_no_wrong_circle():
    ious, wrong = [], 0
    for seed in range(940_000, 940_030):
        image, pupil = _varied(seed)
        region = _learned(image)
        assert region.finder == "learned"
        value = iou(region.mask, pupil) if region.found else 0.0
        wrong += region.found and value < 0.3
        ious.append(value)
    assert sum(v > 0 for v in ious) >= 27, ious  # found on at least 90% of them
    assert float(np.median(ious)) >= 0.8, ious
    assert wrong == 0, ious


@pytest.mark.parametrize("only", [("half_face", "small"), ("oblique",), ("macro",), ("dark_iris", "glare"),
                                  ("white_pupil", "ring_flash"), ("rotate_shear", "lids"), ("far",),
                                  ("macro_white",)])
def test_shipped_finder_on_each_kind_of_real_photograph_variation(only):
    ious = []
    for seed in range(941_000, 941_006):
        image, pupil = _varied(seed, only)
        region = _learned(image)
        ious.append(iou(region.mask, pupil) if region.found else 0.0)
        assert not (region.found and ious[-1] < 0.3), (only, seed, ious)
    assert sum(v >= 0.5 for v in ious) >= 5, (only, ious)


def test_an_oblique_pupil_is_an_ellipse():
    image, pupil = _varied(942_001, ("oblique",))
    region = _learned(image)
    assert region.found
    assert region.axes is not None
    assert max(region.axes) / min(region.axes) > 1.1  # squeezed by 0.55-0.9 across
    # The ellipse fits the squeezed pupil better than the circle of the same area would.
    circle = np.zeros(pupil.shape, np.uint8)
    import cv2

    cv2.circle(circle, (round(region.center[0]), round(region.center[1])), round(region.radius), 1, -1)
    assert iou(region.mask, pupil) > iou(circle.astype(bool), pupil)


def test_where_the_finder_puts_the_pupil_moves_with_the_photograph():
    import cv2

    image, _ = _varied(943_000, ())
    base = _learned(image)
    assert base.found
    # Padded by 40 px on the left and 24 on top: the same pupil, shifted.
    padded = cv2.copyMakeBorder(image, 24, 0, 40, 0, cv2.BORDER_REPLICATE)
    moved = _learned(padded)
    assert moved.found
    assert moved.center == pytest.approx((base.center[0] + 40, base.center[1] + 24), abs=0.06 * base.radius + 1)
    # Twice the size: twice the radius, at twice the place.
    double = cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    big = _learned(double)
    assert big.found
    assert big.radius == pytest.approx(2 * base.radius, rel=0.08)
    assert big.center == pytest.approx((2 * base.center[0], 2 * base.center[1]), abs=0.12 * big.radius + 1)


def test_shipped_finder_finds_no_pupil_where_there_is_no_eye(csdi_jpeg):
    from components.imaging.loading import decode_image
    from tests.support import non_eye_pictures

    rng = np.random.default_rng(5)
    pictures = [np.full((240, 320, 3), 128, np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
                decode_image(csdi_jpeg, min_side=512).pixels]
    # The packaging photograph and its crops (the portrait beside it has real eyes in it).
    pictures += non_eye_pictures()[4:]
    # A bright disc filling much of the frame, as a mature cataract does in a close-up, but no iris.
    for background, radius in ((60, 60), (128, 85), (200, 100)):
        disc = np.full((180, 240, 3), background, np.uint8)
        cv2.circle(disc, (120, 90), radius, (225, 225, 215), -1)
        pictures.append(disc)
    for picture in pictures:
        region = _learned(picture)
        assert not region.found, picture.shape
        assert region.reason
        assert not region.mask.any()


def test_the_finder_is_chosen_by_argument_or_environment(monkeypatch):
    from components.lens import finder as lens

    image, _ = _varied(943_000, ())
    monkeypatch.setenv(config.LENS_FINDER.name, "circle")
    assert lens.find_lens(image, "external").finder == "circle"
    assert lens.find_lens(image, "external", finder="learned").finder == "learned"
    monkeypatch.setenv(config.LENS_FINDER.name, "hough")
    with pytest.raises(lens.AttentionError, match="CATARACT_CAM_LENS_FINDER"):
        lens.find_lens(image, "external")
    with pytest.raises(lens.AttentionError, match="Unknown lens finder"):
        lens.find_lens(image, "external", finder="hough")


def test_a_real_eye_in_a_real_photograph():
    """Grace Hopper's portrait (public domain, shipped with matplotlib): her right eye, 70 x 55 px."""
    import matplotlib

    from components.imaging.loading import load_rgb

    portrait = load_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    crop = np.ascontiguousarray(portrait[155:210, 260:330])
    region = _learned(crop)
    assert region.found, region.reason
    # The pupil's centre marked by eye on a tenfold enlargement of the crop, at (45, 30.5); the dark iris
    # is about 14 px across.
    assert region.center == pytest.approx((45.0, 30.5), abs=4.0)
    assert 2.0 <= region.radius <= 7.0


def test_the_loaded_net_computes_what_the_trained_one_does():
    """Loading folds each BatchNorm into its convolution and goes channels-last; the outputs stay the same."""
    import torch

    from components.lens.net import LENS_FINDER_PATH, LensNet

    trained = LensNet()
    trained.load_state_dict(torch.load(LENS_FINDER_PATH, map_location="cpu", weights_only=True)["state_dict"])
    trained.eval()
    loaded = load_lens_net()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    x = torch.randn(3, 3, INPUT_SIDE, INPUT_SIDE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x.contiguous(memory_format=torch.channels_last)), trained(x),
                                   atol=1e-4, rtol=1e-4)
