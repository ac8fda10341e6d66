"""Each eye's screening decision, taken by :func:`components.screening.decision.decide` from the report's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from components.explanation.cam import Explanation
from components.report.content import EyeFindings, ReportError
from components.screening.decision import ScreeningDecision, decide
from components.screening.vocabulary import attention_modality


@dataclass(frozen=True)
class EyeResult:
    """One eye's inputs and what the screening rule made of them."""

    eye: EyeFindings
    decision: ScreeningDecision


def positive_probability(expl: Explanation, positive_class: str) -> float:
    """The explanation's probability of the positive class, whatever the case of its name."""
    for name, value in expl.probabilities.items():
        if str(name).lower() == positive_class.lower():
            return float(value)
    raise ReportError(
        f"The explanation has no probability for the class {positive_class!r}; "
        f"expected one of {', '.join(map(repr, expl.probabilities))}."
    )


def _known_modality(modality: str | None) -> str | None:
    try:
        return attention_modality(modality)
    except ValueError:
        return None  # free text is printed as given, but says nothing about where the lens is


def attention_context(eye: EyeFindings) -> tuple[str | None, str | None]:
    """The attention verdict's code and the modality it was judged in, from the eye's inputs."""
    modality = _known_modality(eye.modality)
    if eye.attention is None:
        return None, modality
    return eye.attention.verdict, modality or _known_modality(eye.attention.modality)


def decide_eyes(
    eyes: Sequence[EyeFindings], threshold: float, band: float, positive_class: str
) -> list[EyeResult]:
    """Each eye's decision at the model's threshold, in the order given.

    Raises:
        ReportError: an explanation without the positive class, or values decide() refuses.
    """
    results = []
    for eye in eyes:
        p = positive_probability(eye.explanation, positive_class) if eye.explanation is not None else None
        verdict, modality = attention_context(eye)
        try:
            decision = decide(
                p,
                threshold,
                band=band,
                gradable=eye.gradable,
                attention_verdict=verdict,
                modality=modality,
                eye=eye.eye,
                positive_class=positive_class,
            )
        except ValueError as err:
            raise ReportError(str(err)) from None
        results.append(EyeResult(eye, decision))
    return results
