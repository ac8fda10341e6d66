"""The words and the one decision: codes and their labels, the clinician's notes, and the screening decision.

``components.screening.decide`` and ``next_step`` are stable names for callers outside the project.
"""

from components.screening.decision import (
    DEFAULT_BAND,
    FINAL_DECISION,
    REFER,
    ROUTINE,
    ScreeningDecision,
    decide,
    format_probability,
    format_threshold,
    next_step,
)

__all__ = ["DEFAULT_BAND", "FINAL_DECISION", "REFER", "ROUTINE", "ScreeningDecision", "decide",
           "format_probability", "format_threshold", "next_step"]
