"""Training: a tiny real run end to end, resuming, the split, calibration and the threshold rule."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from models.train import (
    Sample,
    TrainConfig,
    TrainError,
    choose_threshold,
    fit_temperature,
    fold_temperature,
    read_folder,
    split_samples,
    train,
)

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
    from components.imaging import decode_image
    from models import load_classifier
    from models.evaluate import evaluate

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


def test_imagenet_init_fails_clearly_offline(tiny_folder: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # a cache with nothing in it
    with pytest.raises(TrainError, match="cannot be downloaded offline"):
        train(tiny_folder, tmp_path / "c.pt", TrainConfig(**{**TINY, "init": "imagenet"}), progress=False)


def test_bad_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cataract").mkdir()
    with pytest.raises(TrainError, match="expected at least 2"):
        read_folder(tmp_path)
