"""models.efficientnet against the installed torchvision: same layout, same weights, same outputs and maps.

The runtime builds its own EfficientNet-B0 so that no process imports torchvision (about 165 MB of
resident memory, docs/MEMORY.md). These tests hold it to torchvision's ``efficientnet_b0`` module
for module, and check that the command line and the dashboard never import torchvision.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import efficientnet_b0 as tv_efficientnet_b0
from torchvision.ops import StochasticDepth as TvStochasticDepth

from components.explanation.cam import _split, explain
from models import Classifier, build_model, load_classifier
from models.classifier import _head_from_spec
from models.efficientnet import EfficientNet, StochasticDepth, efficientnet_b0
from tests.support import ROOT, make_images

CHILD_TIMEOUT = 600  # seconds: a first model load on two shared cores


def calibrated(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics measured on images, so activations stay at unit scale (not 1e-13) for the comparisons."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        model(torch.randn(8, 3, 96, 96))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module]:
    """torchvision's EfficientNet-B0 (2 classes, random weights, calibrated) and ours with its state dict."""
    torch.manual_seed(11)
    theirs = calibrated(tv_efficientnet_b0(num_classes=2), 12)
    ours = efficientnet_b0(num_classes=2)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours.eval(), theirs


@pytest.mark.parametrize("num_classes", [2, 1000])
def test_state_dict_keys_shapes_and_dtypes_are_torchvisions(num_classes: int) -> None:
    ours = efficientnet_b0(num_classes=num_classes).state_dict()
    theirs = tv_efficientnet_b0(num_classes=num_classes).state_dict()
    assert list(ours) == list(theirs)  # same names in the same order
    for key, tensor in theirs.items():
        assert ours[key].shape == tensor.shape, key
        assert ours[key].dtype == tensor.dtype, key


def test_module_tree_is_torchvisions() -> None:
    # Every module under the same name; every leaf (Conv2d, BatchNorm2d with its eps and momentum,
    # SiLU, Sigmoid, pooling, Dropout, Linear) the same class with the same settings.
    ours, theirs = efficientnet_b0(), tv_efficientnet_b0()
    ours_modules, theirs_modules = dict(ours.named_modules()), dict(theirs.named_modules())
    assert list(ours_modules) == list(theirs_modules)
    for name, theirs_module in theirs_modules.items():
        ours_module = ours_modules[name]
        if isinstance(theirs_module, TvStochasticDepth):
            assert isinstance(ours_module, StochasticDepth), name
            assert (ours_module.p, ours_module.mode) == (theirs_module.p, theirs_module.mode), name
        elif not list(theirs_module.children()):
            assert type(ours_module) is type(theirs_module), name
            assert repr(ours_module) == repr(theirs_module), name
        else:  # containers: a Sequential where torchvision has one (the Grad-CAM chain split walks them)
            assert isinstance(ours_module, nn.Sequential) == isinstance(theirs_module, nn.Sequential), name
    batchnorms = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batchnorms) == 49
    assert {(m.eps, m.momentum) for m in batchnorms} == {(1e-5, 0.1)}


def test_stochastic_depth_grows_with_the_block_index() -> None:
    depths = [m for m in efficientnet_b0().modules() if isinstance(m, StochasticDepth)]
    assert len(depths) == 16
    assert [m.p for m in depths] == [0.2 * i / 16 for i in range(16)]
    assert {m.mode for m in depths} == {"row"}


def test_a_seeded_build_draws_torchvisions_initial_weights() -> None:
    torch.manual_seed(5)
    ours = efficientnet_b0(num_classes=3).state_dict()
    torch.manual_seed(5)
    theirs = tv_efficientnet_b0(num_classes=3).state_dict()
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor), key
    # build_model, as before with torchvision's constructor: same backbone and head for a seed.
    torch.manual_seed(6)
    built = build_model(2).state_dict()
    torch.manual_seed(6)
    reference = tv_efficientnet_b0()
    reference.classifier = _head_from_spec([{"type": "dropout", "p": 0.2}, {"type": "linear", "in": 1280, "out": 2}])
    for key, tensor in reference.state_dict().items():
        assert torch.equal(built[key], tensor), key


def test_outputs_and_last_features_equal_torchvisions(pair) -> None:
    ours, theirs = pair
    torch.manual_seed(3)
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        ours_features, theirs_features = ours.features(x), theirs.features(x)
        ours_logits, theirs_logits = ours(x), theirs(x)
    assert ours_features.shape == (4, 1280, 7, 7)
    assert float(theirs_features.abs().mean()) > 0.1  # calibrated: no vanishing activations to compare
    torch.testing.assert_close(ours_features, theirs_features, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_logits, theirs_logits, rtol=1e-6, atol=1e-6)


def test_training_mode_draws_the_same_dropout_and_stochastic_depth(pair) -> None:
    ours, theirs = pair
    x = torch.randn(4, 3, 64, 64)
    state = {k: v.clone() for k, v in theirs.state_dict().items()}
    try:
        outputs = []
        for model in (ours, theirs):
            model.train()
            torch.manual_seed(9)
            logits = model(x)
            logits.sum().backward()
            outputs.append((logits.detach(), model.features[0][0].weight.grad.clone()))
        torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(outputs[0][1], outputs[1][1], rtol=1e-5, atol=1e-7)
    finally:
        for model in (ours, theirs):  # leave the module-scoped pair as it was given
            model.zero_grad(set_to_none=True)
            model.load_state_dict(state)
            model.eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
@pytest.mark.parametrize("layer", ["features.8", "features.6.2.block.3"])
def test_gradcam_equals_torchvisions(pair, method: str, layer: str) -> None:
    ours, theirs = pair
    names = ("Cataract", "Normal")
    images = make_images(21)[:3]
    mine = explain(Classifier(model=ours, class_names=names), images, method=method, layer=layer, target=0)
    reference = explain(Classifier(model=theirs, class_names=names), images, method=method, layer=layer, target=0)
    for a, b in zip(mine, reference, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
        assert not b.is_zero
        np.testing.assert_allclose(a.cam_lowres, b.cam_lowres, atol=1e-5)
        np.testing.assert_allclose(a.cam, b.cam, atol=1e-5)


def test_gradcam_splits_ours_and_torchvisions_at_the_layer(pair) -> None:
    from torchvision.models import mobilenet_v2, mobilenet_v3_small

    ours, theirs = pair
    assert _split(ours, "features.8") is not None
    assert _split(theirs, "features.8") is not None
    assert _split(mobilenet_v3_small(), "features.3") is not None
    assert _split(mobilenet_v2(), "features.3") is not None

    class Subclass(EfficientNet):  # may change forward: not trusted to be a chain
        pass

    assert _split(Subclass(), "features.8") is None


def test_the_demo_checkpoint_predicts_exactly_as_in_torchvision() -> None:
    # The shipped weights, loaded into ours and into torchvision's module: the same logits to the bit.
    clf = load_classifier(None)
    theirs = tv_efficientnet_b0()
    theirs.classifier = _head_from_spec(clf.head)
    theirs.load_state_dict(clf.model.state_dict(), strict=True)
    theirs.eval()
    assert type(clf.model) is EfficientNet
    x = clf.preprocess(make_images(3))
    with torch.no_grad():
        assert torch.equal(clf.model(x), theirs(x))
    reference = dataclasses.replace(clf, model=theirs)  # same input size and normalisation
    for a, b in zip(explain(clf, make_images(3)[:2]), explain(reference, make_images(3)[:2]), strict=True):
        assert a.probabilities == b.probabilities
        np.testing.assert_array_equal(a.cam, b.cam)


def _imports(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", stderr, re.M)}


def _child_env(data: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CATARACT_CAM_DATA": str(data)}
    env.pop("CATARACT_CAM_MODEL", None)  # the shipped demo model
    env.pop("CATARACT_CAM_DB_URL", None)
    return env


def test_the_batch_command_never_imports_torchvision(tmp_path: Path) -> None:
    photo = tmp_path / "eye_OD.png"
    Image.fromarray(make_images(4)[0]).save(photo)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "components", "batch", str(photo),
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=_child_env(tmp_path / "data"),
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "gradcam_eye_OD.jpg").is_file()
    imported = _imports(done.stderr)
    assert {"models.efficientnet", "components.explanation.cam"} <= imported
    assert not {m for m in imported if m.split(".")[0] == "torchvision"}
    # Nor what it used to drag in (through torchvision.ops): torch's compiler stack and sympy.
    assert not {m for m in imported if m.split(".")[0] in ("sympy", "triton") or m.startswith("torch._dynamo")}


_DASHBOARD = r"""
import gc, sys
from pathlib import Path
from streamlit.testing.v1 import AppTest

at = AppTest.from_file("dashboard/app.py", default_timeout=600)
at.run()
assert not at.exception, at.exception
photo = Path(sys.argv[1])
at.file_uploader(key="quick_upload").upload(photo.name, photo.read_bytes(), "image/png").run()
assert not at.exception, at.exception
assert any(m.label.startswith("P(") for m in at.metric), [m.label for m in at.metric]
from models.efficientnet import EfficientNet
assert any(isinstance(o, EfficientNet) for o in gc.get_objects()), "no model was loaded"
print(sorted(m for m in sys.modules if m.split(".")[0] == "torchvision"))
"""


def test_the_dashboard_loads_and_explains_without_torchvision(tmp_path: Path) -> None:
    photo = tmp_path / "eye_OD.png"
    Image.fromarray(make_images(4)[1]).save(photo)
    done = subprocess.run([sys.executable, "-c", _DASHBOARD, str(photo)], cwd=ROOT, env=_child_env(tmp_path / "data"),
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_importing_the_engine_and_the_classifier_does_not_import_torchvision() -> None:
    code = ("import sys, models.classifier, components.explanation.cam, components.workflows.batch, components.cli, "
            "gradcam_visualization\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', 'sympy')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
