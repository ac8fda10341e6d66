"""Honest evaluation of a classifier on a labelled folder: metrics with bootstrap intervals, calibration, attention.

Definitions used throughout (the positive class is Cataract; a case is called positive when
p(Cataract) >= the checkpoint's threshold):

- sensitivity = TP / (TP + FN), specificity = TN / (TN + FP), PPV = TP / (TP + FP),
  NPV = TN / (TN + FN), accuracy = (TP + TN) / n.
- ROC AUC = the share of (cataract, normal) pairs in which the cataract eye has the higher
  p(Cataract), ties counting one half (the Mann-Whitney statistic).
- ECE = sum over 10 equal-width bins of p(Cataract) on [0, 1] (the last bin closed) of
  (images in bin / n) * |share of cataract eyes in bin - mean p(Cataract) in bin|.
- 95% intervals: percentile bootstrap, resampling whole groups (patients, from labels.csv's
  ``group`` column; each image its own group otherwise) with replacement, seeded; a resample in
  which a metric is undefined (no cataract eyes, say) is left out for that metric.
- Pointing game: share of images with a pupil mask whose Grad-CAM maximum (of the predicted
  class, resized to the mask's size) lies inside the pupil. Energy in pupil: sum of the map
  inside the pupil mask / sum of the whole map; a map with no positive evidence counts as 0.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.base.files import atomic_write_bytes
from components.base.tables import read_csv

METRIC_NAMES = ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv")
ECE_BINS = 10


class EvaluationError(CataractCamError, ValueError):
    """The data or model cannot be evaluated as asked; the message says what was expected."""


@dataclass
class Predictions:
    """Per-image results of a model on a labelled folder."""

    files: list[str]
    positives: np.ndarray  # bool: the image is labelled Cataract
    scores: np.ndarray  # p(Cataract)
    groups: list[str]
    pointing: np.ndarray | None = None  # bool per image with a mask
    energy: np.ndarray | None = None  # float per image with a mask
    typicality: list[Any] | None = None  # components.typicality.score.Typicality per image


# ------------------------------------------------------------------------------------------
# Metrics on plain arrays.
# ------------------------------------------------------------------------------------------


def confusion(positives: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, int]:
    """TP, FP, TN, FN when a score >= threshold calls a case positive."""
    positives = np.asarray(positives, dtype=bool)
    called = np.asarray(scores, dtype=np.float64) >= threshold
    return {"tp": int((called & positives).sum()), "fp": int((called & ~positives).sum()),
            "tn": int((~called & ~positives).sum()), "fn": int((~called & positives).sum())}


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def roc_auc(positives: np.ndarray, scores: np.ndarray) -> float:
    """Share of positive-negative pairs ranked correctly, ties one half; NaN without both classes."""
    positives = np.asarray(positives, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return float("nan")
    # Average ranks turn pair counting into one sort: U = sum of positive ranks - n_pos(n_pos+1)/2.
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def point_metrics(positives: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, PPV, NPV at the threshold, and ROC AUC."""
    c = confusion(positives, scores, threshold)
    n = c["tp"] + c["fp"] + c["tn"] + c["fn"]
    return {
        "auc": roc_auc(positives, scores),
        "accuracy": _ratio(c["tp"] + c["tn"], n),
        "sensitivity": _ratio(c["tp"], c["tp"] + c["fn"]),
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "ppv": _ratio(c["tp"], c["tp"] + c["fp"]),
        "npv": _ratio(c["tn"], c["tn"] + c["fn"]),
    }


def reliability(positives: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per equal-width bin of p(Cataract): its range, image count, mean p and observed cataract share."""
    positives = np.asarray(positives, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    index = np.minimum((scores * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": count,
                    "mean_score": float(scores[members].mean()) if count else float("nan"),
                    "observed": float(positives[members].mean()) if count else float("nan")})
    return out


def expected_calibration_error(positives: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins of p(Cataract), weighted by the share of images in each bin."""
    n = len(scores)
    if not n:
        return float("nan")
    return float(sum(b["count"] / n * abs(b["observed"] - b["mean_score"])
                     for b in reliability(positives, scores, bins) if b["count"]))


def bootstrap_ci(positives: np.ndarray, scores: np.ndarray, threshold: float, groups: Sequence[str] | None = None,
                 *, resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap interval of each metric in :func:`point_metrics`, resampling whole groups."""
    positives = np.asarray(positives, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if groups is None:
        groups = [str(i) for i in range(len(scores))]
    keys, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(keys))]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in METRIC_NAMES}
    for _ in range(resamples):
        picked = rng.integers(0, len(members), size=len(members))
        idx = np.concatenate([members[g] for g in picked])
        for name, value in point_metrics(positives[idx], scores[idx], threshold).items():
            if not np.isnan(value):
                values[name].append(value)
    out = {}
    for name in METRIC_NAMES:
        v = np.asarray(values[name])
        out[name] = (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) else (float("nan"),) * 2
    return out


def summarise(pred: Predictions, threshold: float, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The evaluation in the command line's ``--json`` shape."""
    point = point_metrics(pred.positives, pred.scores, threshold)
    ci = bootstrap_ci(pred.positives, pred.scores, threshold, pred.groups, resamples=resamples, seed=seed)
    result: dict[str, Any] = {"n": len(pred.scores), "threshold": float(threshold)}
    for name in METRIC_NAMES:
        result[name] = {"value": _finite(point[name]), "ci95": [_finite(ci[name][0]), _finite(ci[name][1])]}
    result["ece"] = _finite(expected_calibration_error(pred.positives, pred.scores))
    result["confusion"] = confusion(pred.positives, pred.scores, threshold)
    result["pointing_game"] = result["energy_in_pupil_median"] = None
    if pred.pointing is not None and pred.energy is not None and len(pred.pointing):
        result["pointing_game"] = float(np.mean(pred.pointing))
        result["energy_in_pupil_median"] = float(np.median(pred.energy))
    return result


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined metric becomes null."""
    return None if value is None or np.isnan(value) else float(value)


# ------------------------------------------------------------------------------------------
# Running a model over a folder.
# ------------------------------------------------------------------------------------------


def attention_in_mask(cam: np.ndarray, mask: np.ndarray) -> tuple[bool, float]:
    """(map maximum inside the mask, share of map energy inside the mask), the map resized to the mask's size."""
    from components.explanation.overlay import resize_map

    inside = mask > 127 if mask.dtype == np.uint8 else mask.astype(bool)
    full = resize_map(np.asarray(cam, dtype=np.float32), (mask.shape[1], mask.shape[0]))
    total = float(full.sum())
    if total <= 0:
        return False, 0.0
    peak = np.unravel_index(int(np.argmax(full)), full.shape)
    return bool(inside[peak]), float(full[inside].sum() / total)


def predict_folder(classifier: ClassifierLike, data: str | os.PathLike[str], *, batch_size: int = 16,
                   progress: Callable[[int], None] | None = None) -> Predictions:
    """p(Cataract) for every image in ``data``; Grad-CAM attention in the pupil where ``masks/`` has one."""
    import cv2

    from components.explanation.cam import explain
    from components.imaging.loading import decode_image
    from components.typicality.score import assess, explain_options
    from models.training.train import read_folder

    folder = read_folder(data)
    positive = classifier.positive_index
    if positive is None:
        raise EvaluationError("The model has no Cataract class, so cataract metrics cannot be computed.")
    positive_name = classifier.class_names[positive]
    folder_positive = [c.lower() for c in folder.class_names].index(positive_name.lower()) \
        if positive_name.lower() in [c.lower() for c in folder.class_names] else None
    if folder_positive is None:
        raise EvaluationError("The data folder has no cataract/ sub-folder; expected cataract/ and normal/.")
    files, positives, scores, grp, pointing, energy = [], [], [], [], [], []
    typical: list[Any] = []
    samples = folder.samples
    mask_dir = folder.root / "masks"
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = [decode_image(folder.root / s.file, min_side=classifier.input_size).pixels for s in chunk]
        masks = []
        for s in chunk:
            path = mask_dir / f"{Path(s.file).stem}_pupil.png"
            masks.append(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None)
        explanations = None
        options = explain_options(classifier)
        if options or any(m is not None for m in masks):
            # One forward pass gives the maps (for the masks) and typicality's features: cheaper than a
            # plain prediction followed by typicality's own partial pass.
            explanations = explain(classifier, images, **options)
            probs = [e.probabilities[positive_name] for e in explanations]
            for e, m in zip(explanations, masks, strict=True):
                if m is not None:
                    hit, share = attention_in_mask(e.cam, m)
                    pointing.append(hit)
                    energy.append(share)
        else:
            probs = list(classifier.predict_proba(images)[:, positive])
        typical.extend(assess(classifier, images, explanations=explanations))
        for s, p in zip(chunk, probs, strict=True):
            files.append(s.file)
            positives.append(s.label == folder_positive)
            scores.append(float(p))
            grp.append(s.group)  # labels.csv's group (patient), else the file itself
        if progress is not None:
            progress(len(chunk))
    return Predictions(files=files, positives=np.array(positives, dtype=bool), scores=np.array(scores),
                       groups=grp, pointing=np.array(pointing, dtype=bool) if pointing else None,
                       energy=np.array(energy) if energy else None, typicality=typical)


# ------------------------------------------------------------------------------------------
# Files: plots, details, the model card.
# ------------------------------------------------------------------------------------------


def roc_points(positives: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    positives = np.asarray(positives, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    tpr = np.array([(scores[positives] >= t).mean() for t in thresholds])
    fpr = np.array([(scores[~positives] >= t).mean() for t in thresholds])
    return fpr, tpr


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def write_plots(pred: Predictions, result: dict[str, Any], out_dir: str | os.PathLike[str],
                title: str = "") -> list[Path]:
    """ROC curve (operating point marked) and reliability diagram as PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    fpr, tpr = roc_points(pred.positives, pred.scores)
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    auc = result["auc"]
    label = f"AUC {auc['value']:.3f} (95% CI {auc['ci95'][0]:.3f}-{auc['ci95'][1]:.3f})" if auc["value"] is not None \
        else "AUC undefined"
    ax.plot(fpr, tpr, color="#1f5fa8", lw=2, label=label)
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--")
    sens, spec = result["sensitivity"]["value"], result["specificity"]["value"]
    if sens is not None and spec is not None:
        ax.plot([1 - spec], [sens], "o", color="#c0392b",
                label=f"threshold {result['threshold']:.3f}: sens {sens:.3f}, spec {spec:.3f}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01),
           title=f"ROC{' - ' + title if title else ''} (n={result['n']})")
    ax.legend(loc="lower right", fontsize=7)
    written.append(out / "roc.png")
    atomic_write_bytes(written[-1], _png(fig))
    plt.close(fig)

    bins = reliability(pred.positives, pred.scores)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(4.6, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    used = [b for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfect calibration")
    ax.plot([b["mean_score"] for b in used], [b["observed"] for b in used], "o-", color="#1f5fa8",
            label=f"model (ECE {result['ece']:.3f})" if result["ece"] is not None else "model")
    ax.set(ylabel="observed share of cataract eyes", ylim=(-0.02, 1.02),
           title=f"Reliability{' - ' + title if title else ''}")
    ax.legend(loc="upper left", fontsize=7)
    ax2.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["count"] for b in bins], width=0.09, color="#7f8c8d")
    ax2.set(xlabel="predicted p(Cataract), 10 equal-width bins", ylabel="images", xlim=(0, 1))
    written.append(out / "reliability.png")
    atomic_write_bytes(written[-1], _png(fig))
    plt.close(fig)
    return written


def details(pred: Predictions, result: dict[str, Any]) -> dict[str, Any]:
    """The summary plus what the plots show and the attention split by true class."""
    extra: dict[str, Any] = {"summary": result, "reliability": reliability(pred.positives, pred.scores),
                             "ece_definition": "10 equal-width bins of p(Cataract); sum of (bin share) x "
                                               "|observed cataract share - mean p(Cataract)|",
                             "bootstrap": "percentile, 95%, groups resampled with replacement"}
    if pred.energy is not None and pred.pointing is not None and len(pred.energy) == len(pred.scores):
        for name, sel in (("cataract", pred.positives), ("normal", ~pred.positives)):
            if sel.any():
                extra[f"attention_{name}"] = {"n": int(sel.sum()), "pointing_game": float(pred.pointing[sel].mean()),
                                              "energy_in_pupil_median": float(np.median(pred.energy[sel]))}
    return json.loads(json.dumps(extra, default=_finite_default).replace("NaN", "null"))


def _finite_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_card(checkpoint: str | os.PathLike[str], card: dict[str, Any]) -> Path:
    """Write the model card as the JSON sidecar ``<checkpoint>.json`` (which ``load_classifier`` reads), atomically."""
    path = Path(checkpoint).with_suffix(".json")
    atomic_write_bytes(path, (json.dumps(card, indent=2, sort_keys=False) + "\n").encode("utf-8"))
    return path


def typicality_summary(results: Sequence[Any]) -> dict[str, Any]:
    """How many of the evaluated photographs are unlike the model's training photographs, or "not available"."""
    from components.screening.vocabulary import TYPICALITY_NOT_AVAILABLE

    scores = [r.ood_score for r in results if r.available and r.ood_score is not None]
    if not results or len(scores) < len(results):
        return {"unlike_training": TYPICALITY_NOT_AVAILABLE, "unlike_training_rate": TYPICALITY_NOT_AVAILABLE}
    flagged = sum(bool(r.unlike_training) for r in results)
    return {"unlike_training": flagged, "unlike_training_rate": round(flagged / len(results), 4),
            "median_ood_score": round(float(np.median(scores)), 6), "threshold": round(float(results[0].threshold), 6)}


def evaluate(classifier: ClassifierLike, data: str | os.PathLike[str], *, resamples: int = 1000, seed: int = 0,
             out_dir: str | os.PathLike[str] | None = None,
             progress: bool = False) -> tuple[dict[str, Any], Predictions]:
    """Score ``classifier`` on ``data`` at its stored threshold; with ``out_dir``, write JSON and plots there."""
    bar = None
    callback = None
    if progress:
        from tqdm import tqdm

        from models.training.train import read_folder

        bar = tqdm(total=len(read_folder(data).samples), unit="image", file=sys.stderr, disable=None)
        callback = bar.update
    try:
        pred = predict_folder(classifier, data, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    result = summarise(pred, classifier.threshold, resamples=resamples, seed=seed)
    result["typicality"] = typicality_summary(pred.typicality or [])
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_bytes(out / "evaluation.json", (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        atomic_write_bytes(out / "evaluation_details.json",
                           (json.dumps(details(pred, result), indent=2) + "\n").encode("utf-8"))
        write_plots(pred, result, out, title=Path(data).name)
    return result, pred


GRID_PLAN: tuple[tuple[str, int], ...] = (
    ("", 0), ("nuclear", 1), ("nuclear", 3), ("cortical", 2),
    ("", 0), ("cortical", 4), ("posterior_subcapsular", 1), ("posterior_subcapsular", 3),
    ("", 0), ("mature", 3), ("mature", 4), ("nuclear", 2),
)


def gradcam_grid(classifier: ClassifierLike, data: str | os.PathLike[str], *,
                 plan: Sequence[tuple[str, int]] = GRID_PLAN, columns: int = 4, tile: tuple[int, int] = (200, 150),
                 alpha: float = 0.45) -> np.ndarray:
    """A picture of synthetic eyes (photograph above its Grad-CAM overlay), one per (type, grade) in ``plan``.

    The first image in labels.csv order matching each (type, grade) is used; "" with grade 0 means a
    normal eye. Each caption gives the truth and the model's p(Cataract); the title says it is a
    demonstration on synthetic images.
    """
    import cv2
    from PIL import Image, ImageDraw

    from components.explanation.cam import explain
    from components.explanation.overlay import blend, font
    from components.imaging.loading import decode_image

    root = Path(data)
    _, rows = read_csv(root / "labels.csv")
    used: set[str] = set()
    picked = []
    for kind, grade in plan:
        match = next((r for r in rows if r["type"] == kind and int(r["grade"]) == grade and r["file"] not in used),
                     None)
        if match is None:
            raise EvaluationError(f"The folder has no image of type {kind or 'normal'} grade {grade} for the grid.")
        used.add(match["file"])
        picked.append(match)
    images = [decode_image(root / r["file"], min_side=classifier.input_size).pixels for r in picked]
    explanations = explain(classifier, images)
    if classifier.positive_index is None:
        raise EvaluationError("The model names no Cataract class, so the grid has nothing to show.")
    positive = classifier.class_names[classifier.positive_index]
    tw, th = tile
    cap_h, title_h, pad = 30, 30, 6
    rows_n = -(-len(picked) // columns)
    canvas = Image.new("RGB", (columns * (tw + pad) + pad, title_h + rows_n * (2 * th + cap_h + pad) + pad),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 7), "Demonstration model on synthetic eyes (not real patients): photograph above, "
              "Grad-CAM of the predicted class below", fill=(0, 0, 0), font=font(12))
    for i, (row, image, ex) in enumerate(zip(picked, images, explanations, strict=True)):
        x = pad + (i % columns) * (tw + pad)
        y = title_h + (i // columns) * (2 * th + cap_h + pad)
        small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        canvas.paste(Image.fromarray(small), (x, y))
        canvas.paste(Image.fromarray(blend(small, ex.cam, alpha=alpha)), (x, y + th))
        truth = "normal" if not row["type"] else f"{row['type'].replace('_', ' ')} grade {row['grade']}"
        p = ex.probabilities[positive]
        call = "cataract" if p >= classifier.threshold else "normal"
        draw.text((x, y + 2 * th + 2), f"truth: {truth}", fill=(0, 0, 0), font=font(11))
        draw.text((x, y + 2 * th + 15), f"p(cataract) {p:.2f} -> {call}", fill=(0, 0, 0), font=font(11))
    return np.asarray(canvas)
