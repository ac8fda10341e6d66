"""The per-patient PDF report: each eye's Grad-CAM evidence and review, next step, model card.

``build_report`` turns a :class:`PatientInfo`, one :class:`EyeFindings` per eye and a
:class:`ModelInfo` into PDF bytes. Inside the package: ``content`` (the inputs), ``results``
(each eye's decision, from :mod:`components.screening.decision`), ``eye`` and ``sections`` (what each part of
the report says), ``panels``, ``layout``, ``style``, ``fonts`` and ``text`` (how it is drawn), and
``build`` (the entry points).
"""

from __future__ import annotations

from components.report.build import build_report, safe_filename
from components.report.content import (
    NOT_REVIEWED,
    NOT_SIGNED,
    REPORT_TITLE,
    EyeFindings,
    ModelInfo,
    PatientInfo,
    ReportError,
    ReviewInfo,
)
from components.report.panels import PANEL_DPI, PANEL_MAX_SIDE
from components.screening.decision import FINAL_DECISION, REFER, ROUTINE
from components.screening.vocabulary import DEMO_WARNING

__all__ = [
    "DEMO_WARNING",
    "FINAL_DECISION",
    "NOT_REVIEWED",
    "NOT_SIGNED",
    "PANEL_DPI",
    "PANEL_MAX_SIDE",
    "REFER",
    "REPORT_TITLE",
    "ROUTINE",
    "EyeFindings",
    "ModelInfo",
    "PatientInfo",
    "ReportError",
    "ReviewInfo",
    "build_report",
    "safe_filename",
]
