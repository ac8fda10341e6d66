"""Evaluation metrics against numbers worked out by hand, bootstrap intervals, and the --json shape."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from models.training.evaluate import (
    attention_in_mask,
    bootstrap_ci,
    confusion,
    expected_calibration_error,
    point_metrics,
    roc_auc,
)

# Ten cases worked out on paper. Cataract = 1.
SCORES = np.array([0.95, 0.85, 0.70, 0.65, 0.40, 0.40, 0.25, 0.15, 0.10, 0.05])
LABELS = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)


def test_confusion_and_rates_by_hand() -> None:
    # Threshold 0.5 calls cases 1-4 positive: TP = 3 (0.95, 0.85, 0.65), FP = 1 (0.70);
    # of the six called negative, FN = 2 (0.40, 0.15) and TN = 4.
    assert confusion(LABELS, SCORES, 0.5) == {"tp": 3, "fp": 1, "tn": 4, "fn": 2}
    m = point_metrics(LABELS, SCORES, 0.5)
    assert m["sensitivity"] == pytest.approx(3 / 5)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["ppv"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(7 / 10)


def test_threshold_is_inclusive() -> None:
    # A score equal to the threshold counts as positive: 0.40 twice (one cataract, one normal).
    assert confusion(LABELS, SCORES, 0.40) == {"tp": 4, "fp": 2, "tn": 3, "fn": 1}


def test_auc_by_counting_pairs() -> None:
    # Pairs won by each cataract eye against the 5 normals: 0.95 -> 5, 0.85 -> 5, 0.65 -> 4,
    # 0.40 -> 3 and a tie (0.5), 0.15 -> 2; 19.5 of 25 pairs.
    assert roc_auc(LABELS, SCORES) == pytest.approx(19.5 / 25)
    assert roc_auc(np.array([1, 0], bool), np.array([0.3, 0.3])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([1, 1], bool), np.array([0.3, 0.4])))


def test_ece_by_hand() -> None:
    # Bins (width 0.1) and |observed - mean p| x share: 0.95: 0.05x0.1, 0.85: 0.15x0.1, 0.70: 0.70x0.1,
    # 0.65: 0.35x0.1, {0.40, 0.40}: |0.5-0.4|x0.2, 0.25: 0.25x0.1, {0.15, 0.10}: |0.5-0.125|x0.2,
    # 0.05: 0.05x0.1. Sum 0.25.
    assert expected_calibration_error(LABELS, SCORES) == pytest.approx(0.25)
    # Perfectly calibrated bins give 0: half of the 0.5s are cataract, all of the 1.0s.
    assert expected_calibration_error(np.array([1, 0, 1], bool), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.0)


def test_bootstrap_contains_point_and_shrinks_with_n() -> None:
    small = bootstrap_ci(LABELS, SCORES, 0.5, resamples=500, seed=1)
    reps = 20
    big_labels, big_scores = np.tile(LABELS, reps), np.tile(SCORES, reps)
    big = bootstrap_ci(big_labels, big_scores, 0.5, resamples=500, seed=1)
    point_small = point_metrics(LABELS, SCORES, 0.5)
    point_big = point_metrics(big_labels, big_scores, 0.5)
    for name, (lo, hi) in small.items():
        assert lo <= point_small[name] <= hi, name
        assert big[name][0] <= point_big[name] <= big[name][1], name
        assert big[name][1] - big[name][0] < (hi - lo) / 2, name  # about 1/sqrt(20) as wide


def test_bootstrap_resamples_whole_groups() -> None:
    # Each case copied three times inside its own group: every resample is the ungrouped resample
    # with every count tripled, so the intervals are identical to the ungrouped ones.
    names = [f"g{i:02d}" for i in range(len(SCORES))]
    plain = bootstrap_ci(LABELS, SCORES, 0.5, names, resamples=300, seed=3)
    grouped = bootstrap_ci(np.repeat(LABELS, 3), np.repeat(SCORES, 3), 0.5, list(np.repeat(names, 3)),
                           resamples=300, seed=3)
    for name in plain:
        assert grouped[name] == pytest.approx(plain[name]), name
    # Treating the copies as independent images instead narrows the intervals: the error groups avoid.
    naive = bootstrap_ci(np.repeat(LABELS, 3), np.repeat(SCORES, 3), 0.5, resamples=300, seed=3)
    assert naive["accuracy"][1] - naive["accuracy"][0] < plain["accuracy"][1] - plain["accuracy"][0]


def test_attention_in_mask_by_hand() -> None:
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:4] = 255
    cam = np.zeros((4, 6), np.float32)
    cam[1, 2], cam[0, 0] = 1.0, 0.5
    hit, share = attention_in_mask(cam, mask)
    assert hit is True
    assert share == pytest.approx(1.0 / 1.5)
    cam[0, 0] = 2.0 / 2  # peak moves outside (ties go to the first maximum, row-major)
    assert attention_in_mask(cam, mask)[0] is False
    assert attention_in_mask(np.zeros((4, 6), np.float32), mask) == (False, 0.0)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny_eval")
    generate_dataset(root, 6, 11, size=(128, 96))
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(2).eval(), class_names=("Cataract", "Normal"), input_size=64, threshold=0.5)
    return path


def test_json_output_has_exactly_the_issue_shape(tiny_folder: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from components.cli import main

    stdout = io.StringIO()
    with redirect_stdout(stdout):
        code = main(["evaluate", str(tiny_folder), "--model", str(tiny_checkpoint), "--json", "--resamples", "50",
                     "--out", str(tmp_path)])
    assert code == 0
    doc = json.loads(stdout.getvalue())
    assert list(doc) == ["n", "threshold", "auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "ece",
                         "confusion", "pointing_game", "energy_in_pupil_median", "typicality"]
    # A checkpoint saved without typicality statistics: "not available", never a number.
    assert doc["typicality"] == {"unlike_training": "not available", "unlike_training_rate": "not available"}
    assert doc["n"] == 6
    assert isinstance(doc["n"], int)
    assert doc["threshold"] == 0.5
    for name in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert set(doc[name]) == {"value", "ci95"}
        assert len(doc[name]["ci95"]) == 2
        assert all(v is None or isinstance(v, float) for v in [doc[name]["value"], *doc[name]["ci95"]])
    assert isinstance(doc["ece"], float)
    assert set(doc["confusion"]) == {"tp", "fp", "tn", "fn"}
    assert sum(doc["confusion"].values()) == 6
    assert all(isinstance(v, int) for v in doc["confusion"].values())
    # Masks exist, so both attention figures are numbers in [0, 1].
    assert 0.0 <= doc["pointing_game"] <= 1.0
    assert 0.0 <= doc["energy_in_pupil_median"] <= 1.0
    # Cataract count from labels.csv: the generator writes 3 of 6.
    assert doc["confusion"]["tp"] + doc["confusion"]["fn"] == 3
    assert json.loads((tmp_path / "evaluation.json").read_text()) == doc
    for png in ("roc.png", "reliability.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_rejects_a_missing_folder(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from components.cli import main

    assert main(["evaluate", "/nonexistent/folder", "--model", str(tiny_checkpoint), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "DATA must be a folder" in captured.err


def test_without_masks_one_pass_gives_the_plain_predictions_and_typicality(tiny_folder: Path, tmp_path: Path) -> None:
    """The demo model carries typicality statistics: evaluation explains once instead of predicting, then
    running typicality's own pass; the scores and the typicality are the same as those two give."""
    import shutil

    from components.imaging.loading import decode_image
    from components.typicality.score import assess
    from models import load_classifier
    from models.training.evaluate import predict_folder

    folder = tmp_path / "no_masks"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns("masks"))
    assert not (folder / "masks").exists()
    classifier = load_classifier(None)
    passes = []
    hook = classifier.model.features[0].register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        predictions = predict_folder(classifier, folder)
    finally:
        hook.remove()
    assert len(passes) == 1  # six photographs, one batch, one pass through the network's stem
    images = [decode_image(folder / f, min_side=classifier.input_size).pixels for f in predictions.files]
    positive = classifier.positive_index
    np.testing.assert_allclose(predictions.scores, classifier.predict_proba(images)[:, positive], atol=1e-5)
    plain = assess(classifier, images)
    assert [t.unlike_training for t in predictions.typicality] == [t.unlike_training for t in plain]
    np.testing.assert_allclose([t.ood_score for t in predictions.typicality], [t.ood_score for t in plain],
                               rtol=1e-6)
