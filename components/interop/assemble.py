"""One eye's export content from what the engine produced: the photograph, its explanation, the review."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from components.explanation.cam import Explanation
from components.explanation.overlay import three_panel
from components.interop.exam import EyeResult
from components.lens.attention import AttentionResult
from components.screening.decision import DEFAULT_BAND

__all__ = ["eye_result"]


def eye_result(
    eye: str,
    image: np.ndarray,
    explanation: Explanation,
    *,
    threshold: float,
    attention: AttentionResult | None = None,
    agrees: bool | None = None,
    clinician_finding: str | None = None,
    source: Dataset | None = None,
    modality: str | None = None,
    band: float = DEFAULT_BAND,
    positive_class: str = "Cataract",
    colormap: str = "jet",
    alpha: float = 0.5,
) -> EyeResult:
    """The :class:`EyeResult` of one explained photograph, with its three panels drawn as on screen.

    Raises:
        TypeError: explanation is not an Explanation.
        KeyError: the model has no class named ``positive_class``.
        ValueError: a value the content model refuses (see :class:`EyeResult`).
    """
    if not isinstance(explanation, Explanation):
        raise TypeError(f"explanation must be an Explanation, got {type(explanation).__name__}.")
    if attention is not None and not isinstance(attention, AttentionResult):
        raise TypeError(f"attention must be an AttentionResult, got {type(attention).__name__}.")
    panels = three_panel(image, explanation.cam, alpha=alpha, colormap=colormap)
    return EyeResult(
        eye=eye, p=float(explanation.probabilities[positive_class]), threshold=float(threshold), band=band,
        attention_verdict=attention.verdict if attention is not None else None,
        modality=modality or (attention.modality if attention is not None else None),
        agrees=agrees, clinician_finding=clinician_finding, panels=np.ascontiguousarray(panels), source=source,
    )
