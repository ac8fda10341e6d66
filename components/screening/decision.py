"""The one screening decision: from p(Cataract) and its context to a finding and a next step.

The review screen, the PDF report, the command line and every export call :func:`decide`; none
applies the threshold itself, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from components.screening.vocabulary import EYE_LABELS, attention_modality, is_off_target

__all__ = [
    "DEFAULT_BAND",
    "FINAL_DECISION",
    "REFER",
    "ROUTINE",
    "ScreeningDecision",
    "decide",
    "format_probability",
    "format_threshold",
    "next_step",
]

DEFAULT_BAND: Final = 0.1
"""Half-width of the indeterminate band around the threshold, in probability."""

REFER: Final = "Refer to an ophthalmologist"
ROUTINE: Final = "No cataract detected by the model; routine follow-up"
FINAL_DECISION: Final = "The final decision rests with the reviewing clinician."

# Finding codes, for exports; the label is what a clinician reads.
CATARACT: Final = "cataract_suspected"
NO_CATARACT: Final = "no_cataract_detected"
UNGRADABLE: Final = "ungradable"
NO_RESULT: Final = "no_model_result"


@dataclass(frozen=True)
class ScreeningDecision:
    """What the model's output means for one eye.

    ``finding`` is a code (``cataract_suspected``, ``no_cataract_detected``, ``ungradable``,
    ``no_model_result``) and ``label`` its words. ``positive`` is p >= threshold,
    ``indeterminate`` is |p - threshold| < band. ``refer`` is True when this eye alone calls for
    referral; ``reasons`` says why, in words that name the eye when one is given.
    ``attention_caution`` is True when the attention check found the map off the lens.
    """

    finding: str
    label: str
    p: float | None
    threshold: float
    band: float
    positive: bool
    indeterminate: bool
    refer: bool
    reasons: tuple[str, ...]
    attention_caution: bool

    @property
    def next_step(self) -> str:
        """This eye's suggested next step on its own; a patient's is :func:`next_step`."""
        return REFER if self.refer else ROUTINE

    @property
    def band_limits(self) -> tuple[float, float]:
        """The indeterminate band's ends, clipped to [0, 1]."""
        return max(self.threshold - self.band, 0.0), min(self.threshold + self.band, 1.0)


def format_probability(p: float) -> str:
    """A probability as the screen and the report print it in a decision."""
    return f"{p:.3f}"


def format_threshold(t: float) -> str:
    """A threshold with two decimals, or three when two would round it."""
    return f"{t:.2f}" if abs(round(t, 2) - t) < 1e-9 else f"{t:.3f}"


def _number(value: float, what: str) -> float:
    # float() would take "0.5" and True; a decision is never made from text or a flag.
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}.") from None


def _unit(value: float, what: str) -> float:
    v = _number(value, what)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must lie in [0, 1], got {value!r}.")
    return v


def decide(
    p: float | None,
    threshold: float,
    *,
    band: float = DEFAULT_BAND,
    gradable: bool = True,
    attention_verdict: str | None = None,
    modality: str | None = None,
    eye: str | None = None,
    positive_class: str = "Cataract",
) -> ScreeningDecision:
    """Decide one eye.

    ``p`` is the model's probability of ``positive_class`` (None when there is no model result),
    ``threshold`` the model's operating threshold, ``band`` the half-width of the indeterminate
    band. An ungradable photograph, a missing result or a positive call refers. A map whose
    attention lies off the lens (``attention_verdict`` off lens) refers too, since the model's
    output then may rest on something other than the lens.

    Raises:
        TypeError: p, threshold or band is not a number (text and booleans are refused).
        ValueError: p or threshold outside [0, 1], band outside [0, 0.5), an unknown eye or
            modality.
    """
    threshold = _unit(threshold, "The threshold")
    band = _number(band, "The indeterminate band")
    if not 0.0 <= band < 0.5:
        raise ValueError(f"The indeterminate band must lie in [0, 0.5), got {band!r}.")
    if eye is not None and eye not in EYE_LABELS:
        raise ValueError(f"Unknown eye {eye!r}; expected 'OD' (right) or 'OS' (left).")
    name = EYE_LABELS[eye] if eye is not None else "This eye"
    # Checked even when the attention is on target, so that a bad modality never passes unseen.
    where = "the fundus field" if attention_modality(modality) == "fundus" else "the lens"
    p = None if p is None else _unit(p, "The probability")
    caution = is_off_target(attention_verdict)
    positive = p is not None and p >= threshold
    indeterminate = p is not None and abs(p - threshold) < band
    reasons: list[str] = []
    if not gradable:
        finding, label = UNGRADABLE, "Ungradable image"
        reasons.append(f"{name}: image ungradable")
    elif p is None:
        finding, label = NO_RESULT, "No model result"
        reasons.append(f"{name}: no model result")
    else:
        finding = CATARACT if positive else NO_CATARACT
        label = ("Cataract suspected" if positive else "No cataract detected") + (
            " (indeterminate)" if indeterminate else "")
        if positive:
            reasons.append(f"{name}: probability of {positive_class.lower()} {format_probability(p)} "
                           f"at or above the threshold {format_threshold(threshold)}")
        if caution:
            reasons.append(f"{name}: the model's attention lies off {where}")
    return ScreeningDecision(finding=finding, label=label, p=p, threshold=threshold, band=band,
                             positive=positive, indeterminate=indeterminate, refer=bool(reasons),
                             reasons=tuple(reasons), attention_caution=caution)


def next_step(decisions: Iterable[ScreeningDecision]) -> str:
    """The patient's suggested next step: referral when any eye calls for it."""
    return REFER if any(d.refer for d in decisions) else ROUTINE
