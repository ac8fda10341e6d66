"""Typicality: the distance against its formula, the threshold's rank, storage, and "not available"."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from components.explanation.cam import explain
from components.typicality.score import (
    NOT_AVAILABLE,
    TypicalityError,
    TypicalityStats,
    assess,
    conformal_threshold,
    explain_options,
    fit_gaussian,
    stats_from_payload,
    stats_to_payload,
    typicality_stats,
)
from models import Classifier, load_classifier
from models.classifier import save_checkpoint
from tests.support import seeded_model


def test_distance_equals_mahalanobis_worked_by_hand():
    # Two classes of four points on a 2x2 square, means (1, 1) and (11, 1). The shared
    # (within-class) covariance is diag(1, 1): each coordinate is 0 or 2 about its class mean.
    # (4, 3) lies (3, 2) from class 0's mean: 9 + 4 = 13; (-7, 2) from class 1's: 49 + 4 = 53.
    x = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [10, 0], [12, 0], [10, 2], [12, 2]], dtype=float)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    g = fit_gaussian(x, y, subspace=2)
    assert g.distance(np.array([[4.0, 3.0], [11.0, 1.0], [6.0, 1.0]])) == pytest.approx([13.0, 0.0, 25.0])


def test_subspace_distance_equals_the_ppca_covariance_formula():
    # With k < d the covariance is P diag(lambda) P^T + sigma^2 (I - P P^T) in standardised units:
    # the distance must equal (z - m)^T Sigma^-1 (z - m) computed with a plain matrix inverse.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6))
    g = fit_gaussian(x, None, subspace=2)
    p = g.basis
    sigma = p @ np.diag(g.variances) @ p.T + g.residual_variance * (np.eye(6) - p @ p.T)
    probe = rng.normal(size=(5, 6)) * 3
    z = (probe - g.centre) / g.scale - g.class_means[0]
    expected = np.einsum("ni,ij,nj->n", z, np.linalg.inv(sigma), z)
    assert g.distance(probe) == pytest.approx(expected, rel=1e-9)
    assert g.basis.shape == (6, 2)


def test_conformal_threshold_rank():
    # 20 scores, rate 0.1: the ceil(21 * 0.9) = 19th smallest is the threshold; only 20 exceeds it.
    scores = np.arange(1.0, 21.0)[::-1]
    assert conformal_threshold(scores, 0.1) == 19.0
    assert conformal_threshold(scores, 0.01) == 20.0
    with pytest.raises(ValueError, match="strictly between"):
        conformal_threshold(scores, 0.0)


def test_bad_input_is_refused():
    with pytest.raises(TypeError):
        fit_gaussian([[1.0, 2.0]], None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two rows"):
        fit_gaussian(np.zeros((1, 3)), None)
    g = fit_gaussian(np.arange(12.0).reshape(4, 3) ** 1.5, None)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        g.distance(np.zeros((2, 4)))
    with pytest.raises(TypicalityError, match="format"):
        stats_from_payload({"format": "something else"})


def _tiny_stats() -> TypicalityStats:
    rng = np.random.default_rng(0)
    g = fit_gaussian(rng.normal(size=(40, 5)), rng.integers(0, 2, 40), subspace=3)
    return TypicalityStats(components={"a": g}, norms={"a": 2.5}, threshold=1.25, info={"reference_count": 40})


@pytest.mark.parametrize("tensors", [True, False])
def test_payload_round_trip(tensors):
    stats = _tiny_stats()
    payload = stats_to_payload(stats, tensors=tensors)
    if not tensors:
        payload = json.loads(json.dumps(payload))
    back = stats_from_payload(payload)
    probe = {"a": np.random.default_rng(1).normal(size=(7, 5)) * 4}
    # Stored as float32: the scores agree to float32 precision.
    assert back.score(probe) == pytest.approx(stats.score(probe), rel=1e-5)
    assert back.threshold == 1.25
    assert back.info == {"reference_count": 40}


def test_checkpoint_without_statistics_says_not_available(classifier, images):
    result = assess(classifier, images[:2])
    assert [r.available for r in result] == [False, False]
    assert all(r.ood_score is None and r.unlike_training is None for r in result)
    assert NOT_AVAILABLE in result[0].text
    assert typicality_stats(classifier) is None
    # Given explanations it says the same, and explain is asked to keep nothing for it.
    assert explain_options(classifier) == {}
    explanations = explain(classifier, images[:2], **explain_options(classifier))
    assert explanations[0].pooled is None
    reused = assess(classifier, images[:2], explanations=explanations)
    assert reused == result


def test_statistics_travel_in_the_checkpoint_and_the_sidecar_wins(tmp_path, images):
    model = seeded_model(1)
    stats = _tiny_stats()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, class_names=("Cataract", "Normal"),
                    typicality=stats_to_payload(stats, tensors=True))
    # weights_only loading accepts what was stored: tensors and plain data only.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(raw["typicality"]["components"]["a"]["basis"], torch.Tensor)
    clf = load_classifier(path)
    assert typicality_stats(clf).threshold == 1.25
    assert "typicality" not in clf.card
    other = TypicalityStats(components=stats.components, norms=stats.norms, threshold=7.0)
    (tmp_path / "m.json").write_text(json.dumps({"name": "mine",
                                                 "typicality": stats_to_payload(other, tensors=False)}))
    clf = load_classifier(path)
    assert typicality_stats(clf).threshold == 7.0
    assert clf.name == "mine"
    assert "typicality" not in clf.card


def test_scores_come_from_the_features_of_each_image(tmp_path, images):
    # assess() on a batch equals assess() one image at a time, and the flag follows the threshold.
    from components.typicality.score import extract_features, fit_typicality

    clf = Classifier(model=seeded_model(2), class_names=("Cataract", "Normal"), input_size=64)
    rng = np.random.default_rng(5)
    ref = [np.clip(im.astype(int) + rng.integers(-20, 20, im.shape), 0, 255).astype(np.uint8)
           for im in images for _ in range(3)]
    stats = fit_typicality(clf, ref[:16], ref[16:], labels=[i % 2 for i in range(16)], rate=0.2)
    clf.typicality = stats_to_payload(stats, tensors=False)
    probe = [images[0], np.full((50, 90, 3), 200, np.uint8)]
    together = assess(clf, probe)
    alone = [assess(clf, [p])[0] for p in probe]
    assert [t.ood_score for t in together] == pytest.approx([a.ood_score for a in alone], rel=1e-5)
    expected = typicality_stats(clf).score(extract_features(clf, probe))
    assert [t.ood_score for t in together] == pytest.approx(list(expected), rel=1e-6)
    assert [t.unlike_training for t in together] == [bool(s > stats.threshold) for s in expected]
    # A flat grey picture of another shape is far from 24 textured squares.
    assert together[1].unlike_training is True


def test_reference_folder_fills_the_sidecar_and_keeps_its_other_keys(tmp_path, images, capsys):
    from components.cli import main

    path = tmp_path / "best_model.pth"
    save_checkpoint(path, seeded_model(4), class_names=("Cataract", "Normal"), input_size=64)
    (tmp_path / "best_model.json").write_text(json.dumps({"name": "clinic model"}))
    ref = tmp_path / "reference"
    ref.mkdir()
    rng = np.random.default_rng(2)
    for i in range(24):
        noisy = np.clip(images[i % 8].astype(int) + rng.integers(-15, 15, images[0].shape), 0, 255).astype(np.uint8)
        (ref / f"eye_{i:02d}.png").write_bytes(_png(noisy))
    (ref / "broken.png").write_bytes(b"not an image")
    assert main(["typicality", "--model", str(path), "--reference", str(ref), "--heldout-fraction", "0.4"]) == 0
    assert "1 unreadable skipped" in capsys.readouterr().err
    card = json.loads((tmp_path / "best_model.json").read_text())
    assert card["name"] == "clinic model"
    clf = load_classifier(path)
    stats = typicality_stats(clf)
    # 25 files, 10 held out (one of them, or of the rest, the broken file): 24 photographs in all.
    assert stats.info["reference_count"] + stats.info["heldout_count"] == 24
    assert stats.info["labels"] == "predicted"
    assert stats.info["heldout_flagged"] <= 0.05
    # Too few photographs: one clear line, exit code 2, the sidecar untouched.
    small = tmp_path / "few"
    small.mkdir()
    for i in range(5):
        (small / f"eye_{i}.png").write_bytes(_png(images[i]))
    before = (tmp_path / "best_model.json").read_bytes()
    assert main(["typicality", "--model", str(path), "--reference", str(small), "--json"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert (tmp_path / "best_model.json").read_bytes() == before


def _png(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", image[..., ::-1])
    assert ok
    return buf.tobytes()


def _plain_input_cues(pixels: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """The input cues as first written (reductions over the colour axis): the shipped statistics used them."""
    import math

    import cv2

    h, w = original_size
    x = pixels.astype(np.float32)
    grey = x.mean(2)
    flat = x.reshape(-1, 3)
    brightest, darkest = x.max(2), x.min(2)
    saturation = (brightest - darkest) / (brightest + 1e-3)
    detail = [float(np.log((grey - cv2.GaussianBlur(grey, (0, 0), s)).std() + 1e-4)) for s in (1.0, 2.0)]
    noise = float(np.log(np.median(np.abs(cv2.Laplacian(grey, cv2.CV_32F))) + 1e-4))
    return np.array([
        math.log(w / h), min(0.0, math.log(min(h, w) / x.shape[0])),
        *flat.mean(0), *flat.std(0),
        float((brightest > 0.97).mean()), float((darkest < 0.03).mean()),
        *detail, noise, float(saturation.mean()), float(saturation.std()),
    ], dtype=np.float64)


def test_input_cues_equal_the_plain_formulas(images):
    from components.typicality.score import input_cues

    rng = np.random.default_rng(4)
    probes = [im.astype(np.float32) / 255 for im in images[:3]]
    probes += [rng.random((64, 64, 3)), rng.random((300, 300, 3)).astype(np.float32)]
    # The cues sum a plane at a time in float64; the plain formulas (as when the shipped statistics were
    # fitted) sum down the columns one float32 value after another, which drifts by about 1e-4: the
    # means and spreads are held to the exact float64 values, and every cue to the fitted formulas.
    probes.append(np.moveaxis(np.ascontiguousarray(np.moveaxis(probes[0], 2, 0)), 0, 2))
    for pixels, size in zip(probes, [(224, 224), (480, 640), (100, 90), (64, 64), (2000, 3000), (10, 10)],
                            strict=True):
        cues = input_cues(pixels, size)
        np.testing.assert_allclose(cues, _plain_input_cues(np.ascontiguousarray(pixels), size), rtol=5e-4, atol=1e-6)
        exact = np.asarray(pixels, np.float32).reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(cues[2:8], [*exact.mean(0), *exact.std(0)], rtol=1e-6)


@pytest.mark.parametrize("case", ["random", "ties", "odd", "sorted", "sample misses", "small"])
def test_median_is_numpys_median(case):
    from components.typicality.score import _median

    rng = np.random.default_rng(7)
    values = rng.random(65536, dtype=np.float32)
    if case == "ties":  # a flat photograph's Laplacian: most values the same
        values[rng.random(values.size) < 0.7] = 0
    elif case == "odd":
        values = values[:50001]
    elif case == "sorted":
        values = np.sort(values)
    elif case == "sample misses":  # every value the strided sample sees is far above the median
        values[::16] = 10 + values[::16]
    elif case == "small":
        values = values[:1001]
    assert _median(values) == float(np.median(values))


def test_level_cues_equal_the_plain_formulas_and_come_back_from_the_model_input(images):
    """The cues explain keeps: worked on whole levels, equal to the float formulas of ``levels / 255``."""
    import cv2

    from components.typicality.score import _cue_summary, _level_cues
    from models import Classifier
    from tests.support import seeded_model

    rng = np.random.default_rng(5)
    edges = rng.choice(np.array([0, 7, 8, 247, 248, 255], np.uint8), size=(96, 96, 3))  # the clipping thresholds
    probes = [cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA) for im in images[:3]]
    probes += [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), edges, np.full((64, 64, 3), 9, np.uint8)]
    for levels in probes:
        plain = _plain_input_cues(levels.astype(np.float32) / 255, (10, 10))[2:]
        np.testing.assert_allclose(_level_cues(levels), plain, rtol=5e-4, atol=1e-6)
    # The model's normalised input gives its levels back exactly, so explain keeps these very cues.
    clf = Classifier(model=seeded_model(0), class_names=("Cataract", "Normal"))
    summary = _cue_summary(clf)
    for image in images[:3]:
        x = clf.preprocess([image])[0]
        size = clf.input_size
        shrink = image.shape[0] >= size and image.shape[1] >= size
        levels = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        np.testing.assert_array_equal(summary(x), _level_cues(levels))


def test_the_cues_of_a_batch_equal_the_cues_one_image_at_a_time(images):
    """The cues of a batch, from extract_features' ``many`` and from explain, image by image."""
    from components.explanation.cam import explain
    from components.typicality.score import _cue_summary
    from models import Classifier
    from tests.support import seeded_model

    rng = np.random.default_rng(9)
    clf = Classifier(model=seeded_model(0), class_names=("Cataract", "Normal"))
    summary = _cue_summary(clf)
    # Flat, clipped and noisy images beside real ones.
    batch = [*images[:3], np.full((80, 90, 3), 255, np.uint8), np.zeros((64, 64, 3), np.uint8),
             rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)]
    x = clf.preprocess(batch)
    together = summary.many(x)
    assert together.shape == (len(batch), 13)
    for i in range(len(batch)):
        np.testing.assert_array_equal(together[i], summary(x[i]))
        np.testing.assert_array_equal(together[i], summary(clf.preprocess([batch[i]])[0]))
    explained = explain(clf, batch, input_summary=summary)
    for i, ex in enumerate(explained):
        np.testing.assert_array_equal(ex.input_summary, together[i])
