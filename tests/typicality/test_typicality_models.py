"""Typicality on real models: a model trained here on one synthetic seed, and the shipped demo model."""

from __future__ import annotations

import numpy as np
import pytest

from components.imaging.loading import decode_image, load_rgb
from components.typicality.score import assess, typicality_stats
from tests.support import CSDI, non_eye_pictures


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    p, n = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def test_auroc_by_hand():
    # 2 positives x 3 negatives = 6 pairs: 3 wins for 0.9, 1 win and 1 tie for 0.35 -> 4.5 / 6.
    assert auroc(np.array([0.9, 0.35]), np.array([0.1, 0.35, 0.6])) == pytest.approx(0.75)


@pytest.fixture(scope="module")
def demo():
    from models import load_classifier

    return load_classifier(None)


def test_demo_model_ships_statistics(demo):
    stats = typicality_stats(demo)
    assert stats is not None
    assert stats.info["heldout_flagged"] <= 0.05
    assert set(stats.components) == {"features.1", "features.2", "features.3", "input"}


def test_demo_model_flags_fundus_and_non_eye_pictures(demo):
    from models.synthetic import render_eye

    # A synthetic test set from seeds that neither the demo model nor its statistics saw.
    synthetic = [render_eye(seed).image for seed in range(910_000, 910_060)]
    fundus = [load_rgb(p) for p in sorted(CSDI.iterdir()) if p.suffix.lower() in (".jpg", ".png")]
    others = non_eye_pictures()
    assert len(fundus) == 8
    in_dist = np.array([t.ood_score for t in assess(demo, synthetic)])
    fundus_scores = np.array([t.ood_score for t in assess(demo, fundus)])
    other = assess(demo, others)
    other_scores = np.array([t.ood_score for t in other])
    assert auroc(fundus_scores, in_dist) >= 0.99
    assert auroc(other_scores, in_dist) >= 0.99
    assert all(t.unlike_training for t in other)
    assert float(np.mean(in_dist > typicality_stats(demo).threshold)) <= 0.05


def test_scores_from_the_explanations_forward_pass_equal_assess_own(demo):
    from components.explanation.cam import explain
    from components.typicality.score import explain_options
    from models.synthetic import render_eye

    images = [render_eye(seed).image for seed in range(910_100, 910_104)] + [load_rgb(CSDI / "DLY-OD.jpg")]
    own = assess(demo, images)
    explanations = explain(demo, images, **explain_options(demo))
    reused = assess(demo, images, explanations=explanations)
    np.testing.assert_allclose([t.ood_score for t in reused], [t.ood_score for t in own], rtol=1e-9, atol=0)
    assert [(t.unlike_training, t.threshold, t.unusual_in) for t in reused] == \
        [(t.unlike_training, t.threshold, t.unusual_in) for t in own]
    assert own[-1].unlike_training
    assert not any(t.unlike_training for t in own[:-1])
    # One at a time (each explained alone) gives the same scores to float32 rounding.
    alone = [assess(demo, [im], explanations=explain(demo, [im], **explain_options(demo)))[0] for im in images]
    np.testing.assert_allclose([t.ood_score for t in alone], [t.ood_score for t in own], rtol=1e-5)
    # An explanation made without the options: the model runs for that image alone, same result.
    plain = explain(demo, images[:1])[0]
    mixed = assess(demo, images[:2], explanations=[plain, explanations[1]])
    np.testing.assert_allclose([t.ood_score for t in mixed], [t.ood_score for t in own[:2]], rtol=1e-5)
    with pytest.raises(ValueError, match="one explanation per image"):
        assess(demo, images[:2], explanations=explanations[:1])


def test_model_trained_on_one_seed_flags_few_of_another(tmp_path):
    from models.synthetic import generate_dataset
    from models.training.train import TrainConfig, train

    train_dir, other_dir = tmp_path / "seed_a", tmp_path / "seed_b"
    generate_dataset(train_dir, 240, 31, size=(128, 96))
    generate_dataset(other_dir, 160, 32, size=(128, 96))
    out = tmp_path / "small.pt"
    cfg = TrainConfig(epochs=1, batch_size=16, input_size=64, val_fraction=0.5, seed=0, threads=2)
    result = train(train_dir, out, cfg, progress=False)
    assert result.card["typicality_statistics"].startswith("stored in the checkpoint")
    from models import load_classifier

    clf = load_classifier(out)
    stats = typicality_stats(clf)
    assert stats is not None
    assert stats.info["heldout_count"] == 120
    assert stats.info["heldout_flagged"] <= 0.05
    files = sorted(p for p in other_dir.rglob("*.jpg") if "masks" not in p.parts)
    assert len(files) == 160
    flags = [t.unlike_training for t in assess(clf, [decode_image(f, min_side=64).pixels for f in files])]
    assert float(np.mean(flags)) <= 0.05
    # A grey card is nothing like an eye.
    assert assess(clf, [np.full((96, 128, 3), 128, np.uint8)])[0].unlike_training is True
    assert "typicality" not in clf.card  # the statistics live in the checkpoint, the card only notes them
