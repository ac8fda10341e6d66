"""Checkpoints in every form a clinic's training script may write load to identical logits; hostile ones never run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from models import CheckpointError, load_classifier, save_checkpoint
from models.classifier import default_head, infer_head
from tests.support import seeded_model


@pytest.fixture(scope="module")
def x(images) -> torch.Tensor:
    from models import Classifier

    return Classifier(model=seeded_model(0, calibrate=False), class_names=("a", "b")).preprocess(images[:3])


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


MLP_HEAD = [
    {"type": "dropout", "p": 0.3},
    {"type": "linear", "in": 1280, "out": 128},
    {"type": "batchnorm", "features": 128},
    {"type": "relu"},
    {"type": "dropout", "p": 0.2},
    {"type": "linear", "in": 128, "out": 2},
]


def _randomise_bn1d(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("form", ["raw", "model_state_dict", "state_dict", "model", "module_prefix"])
@pytest.mark.parametrize("head", ["linear", "mlp_bn"])
def test_checkpoint_forms_round_trip_to_identical_logits(tmp_path, x, form, head):
    spec = default_head(2) if head == "linear" else MLP_HEAD
    model = seeded_model(5, spec, calibrate=False)
    _randomise_bn1d(model)
    state = model.state_dict()
    if form == "module_prefix":  # what nn.DataParallel saves
        obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    elif form == "raw":
        obj = state
    else:
        optimiser = torch.optim.AdamW(model.parameters())
        obj = {form: state, "epoch": 16, "val_loss": 4e-5, "optimizer": optimiser.state_dict()}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    clf = load_classifier(path)
    assert clf.class_names == ("Cataract", "Normal")
    assert torch.equal(logits(clf.model, x), logits(model, x))
    assert not clf.model.training


@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_head_activation_comes_from_the_sidecar(tmp_path, x, activation):
    spec = default_head(2, hidden=64, activation=activation)
    model = seeded_model(6, spec, calibrate=False)
    path = tmp_path / "clinic_model.pt"
    torch.save({"model_state_dict": model.state_dict()}, path)
    (tmp_path / "clinic_model.json").write_text(json.dumps(
        {"head_activation": activation, "class_names": ["Normal", "Cataract"]}))
    clf = load_classifier(path)
    assert torch.equal(logits(clf.model, x), logits(model, x))
    assert clf.class_names == ("Normal", "Cataract")
    assert clf.positive_index == 1
    # Without the sidecar the default (ReLU) is a different function, and the logits show it.
    (tmp_path / "clinic_model.json").unlink()
    assert not torch.allclose(logits(load_classifier(path).model, x), logits(model, x))


def test_bare_linear_classifier_and_class_names_from_checkpoint(tmp_path, x):
    model = seeded_model(7, calibrate=False)
    model.classifier = torch.nn.Linear(1280, 3)
    path = tmp_path / "three.pt"
    torch.save({"model": model.state_dict(), "class_names": ["Cataract", "Normal", "Other"]}, path)
    clf = load_classifier(path)
    assert clf.class_names == ("Cataract", "Normal", "Other")
    assert torch.equal(logits(clf.model, x), logits(model, x))


def test_save_checkpoint_round_trip_keeps_metadata(tmp_path, x):
    model = seeded_model(8, MLP_HEAD, calibrate=False)
    _randomise_bn1d(model)
    path = tmp_path / "saved.pt"
    sha = save_checkpoint(path, model, class_names=("Cataract", "Normal"), input_size=192, head=MLP_HEAD,
                          threshold=0.37, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          card={"name": "Clinic model", "version": "2.1"}, epoch=12)
    clf = load_classifier(path)
    assert clf.weights_sha256 == sha
    assert len(sha) == 64
    assert (clf.input_size, clf.threshold, clf.mean, clf.std) == (192, 0.37, (0.5,) * 3, (0.25,) * 3)
    assert clf.card["name"] == "Clinic model"
    assert clf.name == "Clinic model"
    assert torch.equal(logits(clf.model, x), logits(model, x))
    assert not list(tmp_path.glob("*.tmp"))


def test_infer_head_reads_layer_order_from_indices():
    model = seeded_model(9, MLP_HEAD, calibrate=False)
    spec = infer_head(model.state_dict())
    assert [layer["type"] for layer in spec] == ["dropout", "linear", "batchnorm", "relu", "dropout", "linear"]
    assert spec[1]["out"] == 128
    assert spec[5]["in"] == 128


class _Payload:
    """Unpickling this would create a folder: the side effect the test looks for."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_hostile_pickle_is_refused_and_its_payload_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = seeded_model(0, calibrate=False).state_dict()
    torch.save({"model_state_dict": state, "extra": _Payload(str(marker))}, path)
    # The payload is real: plain unpickling would run it.
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        load_classifier(path)
    assert not marker.exists()
    assert "state_dict" in str(err.value)
    assert "\n" not in str(err.value)
    with open(path, "rb") as fh:
        torch.load(fh, weights_only=False)
    assert marker.exists()


def test_whole_pickled_model_is_refused_with_how_to_save_weights(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(seeded_model(0, calibrate=False), path)
    with pytest.raises(CheckpointError, match=r"torch\.save\(\{'model_state_dict': model\.state_dict\(\)\}"):
        load_classifier(path)


def test_truncated_empty_and_foreign_files_get_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(seeded_model(0, calibrate=False).state_dict(), good)
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or is not a PyTorch checkpoint"):
        load_classifier(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_classifier(tmp_path / "empty.pt")
    (tmp_path / "notes.pt").write_bytes(b"just some text, not weights")
    with pytest.raises(CheckpointError, match="truncated or is not a PyTorch checkpoint"):
        load_classifier(tmp_path / "notes.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_classifier(tmp_path)


def test_another_architecture_is_named_as_a_mismatch(tmp_path):
    path = tmp_path / "resnet.pt"
    state = resnet18(num_classes=2).state_dict()
    state = {k.replace("fc.", "classifier."): v for k, v in state.items()}
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"not an EfficientNet-B0: \d+ EfficientNet-B0 weights missing"):
        load_classifier(path)


def test_wrong_shape_in_backbone_is_named(tmp_path):
    state = seeded_model(0, calibrate=False).state_dict()
    state["features.0.0.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(state, tmp_path / "odd.pt")
    expected = r"'features.0.0.weight' has shape \(16, 3, 3, 3\), expected \(32, 3, 3, 3\)"
    with pytest.raises(CheckpointError, match=expected):
        load_classifier(tmp_path / "odd.pt")


def test_head_that_cannot_be_inferred(tmp_path):
    state = seeded_model(0, calibrate=False).state_dict()
    state["classifier.1.weight"] = torch.zeros(2, 1280, 1, 1)  # a conv head
    torch.save(state, tmp_path / "conv_head.pt")
    with pytest.raises(CheckpointError, match="Cannot infer the head"):
        load_classifier(tmp_path / "conv_head.pt")
    state = seeded_model(0, calibrate=False).state_dict()
    state["classifier.1.weight"] = torch.zeros(2, 512)
    torch.save(state, tmp_path / "narrow.pt")
    with pytest.raises(CheckpointError, match="first Linear takes 512 features; EfficientNet-B0 gives 1280"):
        load_classifier(tmp_path / "narrow.pt")


def test_missing_demo_model_names_the_option(monkeypatch, tmp_path):
    import models.classifier as mc

    monkeypatch.setattr(mc, "DEMO_MODEL_PATH", tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match=r"--model PATH.*model_path"):
        mc.load_classifier(None)


def test_preprocess_is_a_plain_resize_and_normalisation(images):
    from models import Classifier

    clf = Classifier(model=seeded_model(0, calibrate=False), class_names=("Cataract", "Normal"), input_size=224)
    img = np.zeros((448, 448, 3), np.uint8)
    img[:224, :, 0] = 255  # top half red: after a 2x area resize, rows 0-111 red
    t = clf.preprocess([img])
    assert t.shape == (1, 3, 224, 224)
    red = (1.0 - 0.485) / 0.229
    assert t[0, 0, 0, 0].item() == pytest.approx(red, abs=1e-5)
    assert t[0, 0, 223, 0].item() == pytest.approx(-0.485 / 0.229, abs=1e-5)
    with pytest.raises(ValueError, match="Expected an RGB uint8 image"):
        clf.preprocess([np.zeros((4, 4), np.uint8)])
    # Same tensor whether images come as a batch or one at a time.
    both = clf.preprocess(images[:2])
    assert torch.equal(both[1:], clf.preprocess([images[1]]))
