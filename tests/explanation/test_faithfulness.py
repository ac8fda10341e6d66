"""Faithfulness: curves worked out by hand on a 2x2 model, Spearman against scipy, randomisation and lens tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from components.explanation import faithfulness as F


class MeanRed(nn.Module):
    """p(class 0) = mean red value in [0, 1]: every probability below follows by arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1))
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features[0].bias.zero_()
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.features(x)[:, 0].mean(dim=(1, 2)).clamp(1e-9, 1 - 1e-9).double()
        return torch.stack([m.log(), (1 - m).log()], dim=1)


class Tiny:
    """A classifier-like object over 2x2 images: preprocessing is a plain division by 255."""

    class_names = ("Cataract", "Normal")
    input_size = 2
    target_layer = "features.0"

    def __init__(self) -> None:
        self.model = MeanRed().eval()

    def preprocess(self, images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


RED = np.array([[255, 200], [100, 0]])
CAM = np.array([[1.0, 0.2], [0.6, 0.0]])  # order of attention: (0,0), (1,0), (0,1), (1,1)


def _image() -> np.ndarray:
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = RED
    return image


def test_curve_auc_two_steps_by_hand():
    # Trapezoids of width 0.5: (1.0 + 0.4) / 2 * 0.5 + (0.4 + 0.0) / 2 * 0.5 = 0.45.
    assert F.curve_auc([0.0, 0.5, 1.0], [1.0, 0.4, 0.0]) == pytest.approx(0.45)
    assert F.curve_auc([0.0, 1.0], [0.2, 0.2]) == pytest.approx(0.2)
    with pytest.raises(F.FaithfulnessError, match="ascending"):
        F.curve_auc([0.0, 1.0, 0.5], [1, 1, 1])


def test_deletion_and_insertion_two_steps_by_hand():
    # Grey baseline 128. Mean red over the four pixels, out of 4 * 255 = 1020:
    #   whole image 255 + 200 + 100 + 0 = 555; all grey 512.
    #   deletion after 2 steps of 4: the two most attended, (0,0) and (1,0), turn grey:
    #     128 + 200 + 128 + 0 = 456;  insertion after 2: 255 + 128 + 100 + 128 = 611.
    deletion, insertion = F.deletion_insertion(Tiny(), _image(), CAM, steps=2, baseline="grey")
    assert deletion.fractions == (0.0, 0.5, 1.0)
    assert deletion.scores == pytest.approx((555 / 1020, 456 / 1020, 512 / 1020))
    assert insertion.scores == pytest.approx((512 / 1020, 611 / 1020, 555 / 1020))
    assert deletion.auc == pytest.approx((555 + 2 * 456 + 512) / 1020 / 4)
    assert insertion.auc == pytest.approx((512 + 2 * 611 + 555) / 1020 / 4)


def test_confidence_drop_and_increase_by_hand():
    # Image times map (map / its max, rounded): red 255, 40, 60, 0 -> 355 / 1020.
    full, kept, drop, increase = F.confidence_change(Tiny(), _image(), CAM)
    assert full == pytest.approx(555 / 1020)
    assert kept == pytest.approx(355 / 1020)
    assert drop == pytest.approx((555 - 355) / 555)
    assert increase is False
    result = F.evaluate(Tiny(), _image(), CAM, steps=2, baseline="grey")
    assert result.target == "Cataract"
    assert result.drop == pytest.approx(drop)
    assert result.as_dict()["deletion_auc"] == pytest.approx((555 + 2 * 456 + 512) / 1020 / 4, abs=1e-6)


def test_spearman_by_hand_and_against_scipy():
    # d = (0, 1, 1, 0): rho = 1 - 6 * 2 / (4 * 15) = 0.8.
    assert F.spearman(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(0.8)
    assert F.spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert F.spearman(np.ones(5), np.arange(5)) == 0.0
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, (12, 12)).astype(float)  # many ties
    b = a + rng.integers(0, 4, (12, 12))
    assert F.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)


def test_input_errors():
    with pytest.raises(F.FaithfulnessError, match="steps"):
        F.deletion_insertion(Tiny(), _image(), CAM, steps=0)
    with pytest.raises(F.FaithfulnessError, match="baseline"):
        F.deletion_insertion(Tiny(), _image(), CAM, baseline="noise")
    with pytest.raises(F.FaithfulnessError, match="RGB uint8"):
        F.deletion_insertion(Tiny(), _image().astype(float), CAM)
    with pytest.raises(F.FaithfulnessError, match="at least one image"):
        F.randomisation_check(Tiny(), [])


# ------------------------------------------------------------------- randomisation


class EdgeDetector:
    """A "classifier" with weights whose map is the Sobel edge strength of the image: it ignores them."""

    class_names = ("Cataract", "Normal")
    input_size = 64
    target_layer = "features.1"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential()
        self.model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)))
        self.model.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self.model.add_module("classifier", nn.Linear(4, 2))
        self.model.eval()

    def preprocess(self, images):
        import cv2

        return torch.from_numpy(np.stack([cv2.resize(i, (64, 64)) for i in images])).permute(0, 3, 1, 2).float() / 255

    @staticmethod
    def saliency(classifier, images, targets):
        import cv2

        maps = []
        for image in images:
            grey = cv2.cvtColor(cv2.resize(image, (64, 64)), cv2.COLOR_RGB2GRAY).astype(np.float32)
            maps.append(np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)))
        return maps


def test_randomisation_fails_for_an_edge_detector(images):
    detector = EdgeDetector()
    before = {k: v.clone() for k, v in detector.model.state_dict().items()}
    result = F.randomisation_check(detector, images[:4], saliency=EdgeDetector.saliency)
    assert result.correlations == pytest.approx((1.0,) * 4)
    assert result.passed is False
    assert result.mean > F.RANDOMISATION_MAX_RHO
    assert result.reinitialised == ("features.0", "features.1", "classifier")
    for k, v in detector.model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])


def test_randomisation_passes_for_a_model_whose_maps_use_its_weights(classifier, images):
    model = classifier.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    result = F.randomisation_check(classifier, images[:4])
    assert result.passed is True
    assert result.mean < F.RANDOMISATION_MAX_RHO
    assert result.reinitialised == ("features.7", "features.8", "classifier")
    # The shared model: same weights and buffers, same flags, no gradients written.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert flags == [(m.training, [p.requires_grad for p in m.parameters(recurse=False)]) for m in model.modules()]
    assert all(p.grad is None for p in model.parameters())


def test_randomised_copy_changes_only_the_named_blocks(classifier):
    clone, names = F.randomised_copy(classifier, blocks=2, seed=3)
    assert names == ("features.7", "features.8", "classifier")
    original = dict(classifier.model.named_modules())
    for name, module in clone.model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and name.startswith(names):  # unit scale, no shift
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
        elif isinstance(module, (nn.Conv2d, nn.Linear)):  # a fresh draw inside the blocks only
            changed = not torch.equal(module.weight, original[name].weight)
            assert changed == name.startswith(names), name
    assert clone.class_names == classifier.class_names
    assert clone.input_size == classifier.input_size
    again, _ = F.randomised_copy(classifier, blocks=2, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(clone.model.parameters(), again.model.parameters(), strict=True))


# --------------------------------------------------------------------- clear lens


class RegionRed(nn.Module):
    """p(class 0) = mean red value inside a fixed window of the input (the lens, or a corner)."""

    def __init__(self, window: tuple[slice, slice]) -> None:
        super().__init__()
        self.window = window
        self.features = nn.Sequential(nn.Identity())
        self.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0][:, self.window[0], self.window[1]].mean(dim=(1, 2)).clamp(1e-9, 1 - 1e-9).double()
        return torch.stack([m.log(), (1 - m).log()], dim=1)


def test_lens_test_tells_a_lens_reader_from_a_corner_reader():
    image = np.full((40, 40, 3), 60, np.uint8)
    yy, xx = np.mgrid[0:40, 0:40]
    lens = (yy - 20) ** 2 + (xx - 20) ** 2 <= 36
    image[lens] = (240, 240, 230)  # a white lens
    image[:4, :4] = (250, 250, 250)  # and a white corner stamp
    lens_reader, corner_reader = Tiny(), Tiny()
    lens_reader.input_size = corner_reader.input_size = 40
    lens_reader.model = RegionRed((slice(16, 25), slice(16, 25))).eval()
    corner_reader.model = RegionRed((slice(0, 4), slice(0, 4))).eval()
    on_lens = F.lens_test(lens_reader, image, lens, target="Cataract")
    assert on_lens.probability == pytest.approx(240 / 255, abs=0.01)
    # The image's darkest colour (60), capped at a clear pupil's level.
    assert on_lens.clear_lens_probability == pytest.approx(F.CLEAR_PUPIL_LEVEL / 255, abs=0.01)
    corner = F.lens_test(corner_reader, image, lens, target="Cataract")
    assert corner.drop == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(F.FaithfulnessError, match="empty"):
        F.lens_test(lens_reader, image, np.zeros((40, 40), bool))
