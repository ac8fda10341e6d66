"""Training: a tiny real run end to end, resuming, the split, calibration and the threshold rule."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch

from models.training.calibration import choose_threshold, fit_temperature, fold_temperature
from models.training.data import Sample, read_folder, split_samples
from models.training.train import TrainConfig, TrainError, initial_model, train
from tests.support import ROOT

IMAGENET_FILE = "efficientnet_b0_rwightman-7f5810bc.pth"  # torchvision's name for the IMAGENET1K_V1 weights

TINY = {"epochs": 1, "batch_size": 4, "input_size": 64, "val_fraction": 0.34, "seed": 0, "threads": 2}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny_train")
    generate_dataset(root, 12, 5, size=(128, 96))
    return root


def test_read_folder_classes_and_groups(tiny_folder: Path) -> None:
    folder = read_folder(tiny_folder)
    assert folder.class_names == ("Cataract", "Normal")
    assert len(folder.samples) == 12
    assert folder.has_masks
    # labels.csv pairs consecutive images (two eyes of one patient) into one group.
    assert len({s.group for s in folder.samples}) == 6


def test_split_keeps_groups_together_and_classes_balanced() -> None:
    samples = [Sample(f"f{i}", i % 2, f"p{i // 2}") for i in range(40)]  # 20 patients, one eye of each class
    train_set, val_set = split_samples(samples, 0.25, seed=3)
    assert {s.group for s in train_set}.isdisjoint({s.group for s in val_set})
    assert len(train_set) + len(val_set) == 40
    assert sum(s.label == 0 for s in val_set) == 5
    assert sum(s.label == 1 for s in val_set) == 5
    assert split_samples(samples, 0.25, seed=3) == (train_set, val_set)
    assert split_samples(samples, 0.25, seed=4) != (train_set, val_set)


def test_choose_threshold_by_hand() -> None:
    scores = np.array([0.1, 0.3, 0.35, 0.6, 0.8])
    positives = np.array([0, 1, 0, 1, 1], bool)
    # Candidates 0.05, 0.2, 0.325, 0.475, 0.7, 0.9 give sens + spec 1, 1.5, 1.17, 1.67, 1.33, 1.
    assert choose_threshold(scores, positives, "youden") == pytest.approx(0.475)
    # Sensitivity stays 1 only up to 0.2, where specificity is 0.5, better than at 0.05.
    assert choose_threshold(scores, positives, "sens95") == pytest.approx(0.2)
    # A plateau (0.15, 0.4 and 0.7 all separate perfectly... only 0.4 here) resolves to its middle.
    assert choose_threshold(np.array([0.1, 0.2, 0.6, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.4)


def test_temperature_is_recovered_and_folds_into_the_head() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    labels = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))).astype(np.int64)  # class 1 with p = sigmoid(z)
    logits = torch.tensor(np.stack([np.zeros_like(z), 3 * z], 1))  # three times overconfident
    assert fit_temperature(logits, torch.tensor(labels)) == pytest.approx(3.0, rel=0.08)

    from models import build_model

    torch.manual_seed(0)
    model = build_model(2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        fold_temperature(model, 2.5)
        after = model(x)
    torch.testing.assert_close(after, before / 2.5, rtol=1e-5, atol=1e-6)


def test_tiny_cli_run_writes_a_checkpoint_that_loads_and_evaluates(tiny_folder: Path, tmp_path: Path) -> None:
    from components.cli import main
    from components.imaging.loading import decode_image
    from models import load_classifier
    from models.training.evaluate import evaluate

    out = tmp_path / "tiny.pt"
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        code = main(["train", str(tiny_folder), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                     "--input-size", "64", "--val-fraction", "0.34", "--threads", "2", "--json"])
    assert code == 0
    summary = json.loads(stdout.getvalue())
    clf = load_classifier(out)
    assert clf.class_names == ("Cataract", "Normal")
    assert clf.input_size == 64
    assert clf.threshold == pytest.approx(summary["threshold"])
    assert 0.0 < clf.threshold < 1.0
    assert clf.is_demo is False
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["threshold"] == pytest.approx(clf.threshold)
    assert card["training"]["train_counts"] == {"Cataract": 4, "Normal": 4}  # 2 of 6 patients held out
    assert card["training_data"]["dataset_seeds"] == ["5"]
    result, pred = evaluate(clf, tiny_folder, resamples=20)
    assert result["n"] == 12
    assert sum(result["confusion"].values()) == 12
    # The scores evaluate reports are the model's own probabilities on the decoded files.
    pixels = [decode_image(tiny_folder / f, min_side=64).pixels for f in pred.files]
    np.testing.assert_allclose(pred.scores, clf.predict_proba(pixels)[:, 0], rtol=1e-4, atol=1e-5)


def test_resume_continues_where_it_stopped(tiny_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    straight = train(tiny_folder, tmp_path / "a.pt", cfg, progress=False)
    # max_minutes=0 stops after the first epoch; the resumed run must do only the second.
    first = train(tiny_folder, tmp_path / "b.pt", TrainConfig(**{**TINY, "epochs": 2, "max_minutes": 0.0}),
                  progress=False)
    assert first.epochs_run == 1
    state = torch.load(tmp_path / "b.last.pt", weights_only=True)  # plain tensors and data only
    assert state["epoch"] == 1
    assert "optimizer" in state
    assert state["scheduler"]["step"] > 0
    resumed = train(tiny_folder, tmp_path / "b.pt", cfg, resume=True, progress=False)
    assert resumed.epochs_run == 2
    assert len(resumed.history) == 2
    assert resumed.history[0] == first.history[0]
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def _no_network(url: str, *args: Any, **kwargs: Any) -> None:
    raise URLError("[Errno -2] Name or service not known")


def test_imagenet_init_fails_clearly_offline(tiny_folder: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # a cache with nothing in it
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)  # as on a machine without network
    with pytest.raises(TrainError, match="cannot be downloaded offline") as raised:
        train(tiny_folder, tmp_path / "c.pt", TrainConfig(**{**TINY, "init": "imagenet"}), progress=False)
    message = str(raised.value)
    assert "--init scratch" in message
    assert "--init CHECKPOINT" in message
    assert f"put {IMAGENET_FILE} " in message
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints") in message
    assert "Name or service not known" in message


def test_imagenet_offline_through_the_cli_is_one_line_and_exit_2(tiny_folder: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from components.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    code = main(["train", str(tiny_folder), "--out", str(tmp_path / "c.pt"), "--init", "imagenet", "--json",
                 "--epochs", "1", "--input-size", "64", "--threads", "2"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # torch.hub's "Downloading: ..." line went to stderr, not into --json's stdout
    (error,) = [line for line in captured.err.splitlines() if line.startswith("cataract-cam: error:")]
    assert "cannot be downloaded offline" in error
    assert not (tmp_path / "c.pt").exists()


@pytest.fixture
def cached_imagenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """torch's cache holding a torchvision EfficientNet-B0 state dict (random weights) under the ImageNet name."""
    from torchvision.models import efficientnet_b0

    torch.manual_seed(42)
    state = efficientnet_b0(weights=None).state_dict()
    home = tmp_path / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, home / "hub" / "checkpoints" / IMAGENET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)  # the cache must be enough
    return state


def test_imagenet_init_starts_from_the_cached_weights(cached_imagenet: dict[str, torch.Tensor]) -> None:
    model, head, card = initial_model("imagenet", 2)
    own = model.state_dict()
    backbone = [k for k in cached_imagenet if not k.startswith("classifier.")]
    assert len(backbone) > 300
    for key in backbone:
        assert torch.equal(own[key], cached_imagenet[key]), key
    assert own["classifier.1.weight"].shape == (2, 1280)  # a new head for our classes, not ImageNet's 1000
    assert head[-1]["out"] == 2
    assert card == {}


def test_training_from_imagenet_keeps_the_backbone_when_nothing_is_learnt(
        tiny_folder: Path, tmp_path: Path, cached_imagenet: dict[str, torch.Tensor]) -> None:
    # With a learning rate of zero AdamW leaves every weight where it started, so the trained
    # checkpoint's backbone must be the cached file's, tensor for tensor.
    from models import load_classifier

    result = train(tiny_folder, tmp_path / "i.pt", TrainConfig(**{**TINY, "init": "imagenet", "lr": 0.0}),
                   progress=False)
    assert result.card["training"]["init"] == "imagenet"
    assert result.card["training"]["config"]["init"] == "imagenet"
    trained = dict(load_classifier(tmp_path / "i.pt").model.named_parameters())
    backbone = [k for k in trained if k.startswith("features.")]
    assert len(backbone) > 200
    for key in backbone:
        assert torch.equal(trained[key], cached_imagenet[key]), key


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _strings(value)


def _machine_paths(doc: Any) -> list[str]:
    """Strings in a card that name a place on some machine: absolute POSIX or Windows paths, home folders."""
    home = str(Path.home())
    return [s for s in _strings(doc)
            if s.startswith(("/", "\\\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", s) or home in s]


def test_machine_paths_are_recognised() -> None:
    found = _machine_paths({"a": ["/data/x.pt", "C:\\data\\y.pt", "d:/z.pt", "~/w.pt"],
                            "b": {"c": "stage1.pt", "d": "p(Cataract)"}})
    assert found == ["/data/x.pt", "C:\\data\\y.pt", "d:/z.pt", "~/w.pt"]


def test_a_card_written_by_train_holds_no_machine_path(tiny_folder: Path, tmp_path: Path) -> None:
    from components.cli import main
    from models import build_model, load_classifier, save_checkpoint

    # The starting checkpoint's own card still names a folder, as cards written before this rule did.
    torch.manual_seed(0)
    start = tmp_path / "deep" / "folder" / "stage0.pt"
    start.parent.mkdir(parents=True)
    save_checkpoint(start, build_model(2).eval(), class_names=("Cataract", "Normal"), input_size=64,
                    card={"training": {"init": "checkpoint", "config": {"init": str(tmp_path / "older.pt")},
                                       "wall_time_seconds": 12.0}})
    out = tmp_path / "out" / "stage1.pt"
    out.parent.mkdir()
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        code = main(["train", str(tiny_folder), "--out", str(out), "--init", str(start), "--epochs", "1",
                     "--batch-size", "4", "--input-size", "64", "--val-fraction", "0.34", "--threads", "2", "--json"])
    assert code == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["init"] == "checkpoint"
    assert card["training"]["config"]["init"] == "stage0.pt"
    assert card["training"]["init_training"]["config"]["init"] == "older.pt"
    assert card["training_data"]["folder"] == tiny_folder.name
    assert _machine_paths(card) == []
    assert _machine_paths(load_classifier(out).card) == []  # the card inside the checkpoint too


def test_the_demo_card_holds_no_machine_path() -> None:
    card = json.loads((ROOT / "models" / "weights" / "cataract_b0_demo.json").read_text())
    assert card["training"]["init"] == "checkpoint"
    assert card["training"]["config"]["init"] == "stage1.pt"
    assert _machine_paths(card) == []


def test_bad_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cataract").mkdir()
    with pytest.raises(TrainError, match="expected at least 2"):
        read_folder(tmp_path)
