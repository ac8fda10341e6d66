"""Stable name for callers outside the project: ``components.gradcam.explain`` (the CAM family is
``components.explanation.cam``; code inside the project imports it from there)."""

from components.explanation.cam import METHOD_LABELS, METHODS, ExplainError, Explanation, explain, resolve_targets

__all__ = ["METHODS", "METHOD_LABELS", "ExplainError", "Explanation", "explain", "resolve_targets"]
