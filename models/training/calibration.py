"""Calibrating a trained classifier on validation data: temperature scaling and the operating threshold."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from models.training.data import TrainError

THRESHOLD_RULES = ("youden", "sens95")
THRESHOLD_RULE_TEXT = {"youden": "maximises Youden's J (sensitivity + specificity - 1) on the validation split",
                       "sens95": "highest threshold with validation sensitivity >= 0.95"}
"""How the card states each rule."""


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising validation NLL of softmax(logits / T), by golden-section search on log T."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(logits / math.exp(log_t), labels))

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))


def last_linear(model: nn.Module) -> nn.Linear:
    """The Linear layer that ends the model's head (``model.classifier``), whose outputs are the logits."""
    head = model.get_submodule("classifier")
    last = head[-1] if isinstance(head, nn.Sequential) else head
    if not isinstance(last, nn.Linear):
        raise TrainError("The head does not end in a Linear layer, so the temperature cannot be folded into it.")
    return last


def fold_temperature(model: nn.Module, temperature: float) -> None:
    """Divide the last Linear layer's weights and bias by T, so the plain model outputs logits / T."""
    last = last_linear(model)
    with torch.no_grad():
        last.weight.div_(temperature)
        last.bias.div_(temperature)


def choose_threshold(scores: np.ndarray, positives: np.ndarray, rule: str = "youden") -> float:
    """Operating threshold on p(positive): a case is positive when its score is >= the threshold.

    ``youden`` maximises sensitivity + specificity - 1; ``sens95`` takes the highest threshold whose
    sensitivity is at least 0.95 (so the best specificity that keeps it). Ties (a plateau of
    equally good thresholds) resolve to the middle of the plateau, as far from both classes as the
    data allow. Candidates lie halfway between neighbouring distinct scores.
    """
    if rule not in THRESHOLD_RULES:
        raise TrainError(f"Unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}.")
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if positives.all() or not positives.any():
        raise TrainError("Choosing a threshold needs validation images of both classes.")
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] / 2], (distinct[1:] + distinct[:-1]) / 2, [(distinct[-1] + 1) / 2]])
    sens = np.array([(scores[positives] >= t).mean() for t in candidates])
    spec = np.array([(scores[~positives] < t).mean() for t in candidates])
    if rule == "youden":
        value = sens + spec
        best = np.flatnonzero(np.isclose(value, value.max()))
    else:
        ok = np.flatnonzero(sens >= 0.95)
        best_spec = spec[ok].max()
        best = ok[np.isclose(spec[ok], best_spec)]
    # The plateau's middle, in score space.
    return float((candidates[best[0]] + candidates[best[-1]]) / 2)
