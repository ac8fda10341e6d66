"""The product's words, defined once: codes, the labels a clinician reads, and the warnings.

Every screen, report, command and export imports these; none keeps its own copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ATTENTION_MODALITIES",
    "DEMO_WARNING",
    "DIFFUSE",
    "EYES",
    "EYE_LABELS",
    "FIGURE_LABELS",
    "FINDINGS",
    "FINDING_LABELS",
    "FUNDUS_FIGURE_LABELS",
    "GRADES",
    "MODALITIES",
    "MODALITY_LABELS",
    "NOT_FOUND",
    "NOT_ON_LENS",
    "NOT_ON_LENS_WARNING",
    "NO_SIGN_IN_NOTICE",
    "OFF_BORDER",
    "OFF_SKIN",
    "ON_LENS",
    "PARTLY",
    "REVIEW_STATUS_LABELS",
    "ROLES",
    "ROLE_LABELS",
    "SEXES",
    "SEX_LABELS",
    "SIGNATURE_MEANING",
    "TYPICALITY_NOT_AVAILABLE",
    "UNAUTHENTICATED",
    "UNLIKE_TRAINING",
    "UNLIKE_TRAINING_WARNING",
    "VERDICTS",
    "VERDICT_LABELS",
    "WORKLIST_STATUSES",
    "attention_modality",
    "describe_figures",
    "figure_labels",
    "is_off_target",
    "verdict_label",
]

# --- eyes and photographs ---------------------------------------------------------------------

EYES: Final = ("OD", "OS")
"""Laterality codes: OD the right eye, OS the left."""
EYE_LABELS: Final[Mapping[str, str]] = {"OD": "Right eye (OD)", "OS": "Left eye (OS)"}

MODALITIES: Final = ("external", "slit_lamp", "fundus")
"""The kinds of photograph a record may hold."""
MODALITY_LABELS: Final[Mapping[str, str]] = {
    "external": "External eye photograph",
    "slit_lamp": "Slit-lamp photograph",
    "fundus": "Fundus photograph",
}

ATTENTION_MODALITIES: Final = ("external", "fundus")
"""What the attention check tells apart: the front of the eye (external and slit-lamp
photographs, where the lens is seen through the pupil) and the fundus (where it is not)."""


def attention_modality(modality: str | None) -> str | None:
    """The attention check's modality for a record's modality; None stays None (detect it)."""
    if modality is None:
        return None
    key = str(modality).strip().lower().replace("-", "_").replace(" ", "_")
    if key in ("external", "slit_lamp", "slitlamp"):
        return "external"
    if key == "fundus":
        return "fundus"
    raise ValueError(f"Unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}.")


# --- the patient and the clinician's review ---------------------------------------------------

SEXES: Final = ("F", "M", "X")
SEX_LABELS: Final[Mapping[str, str]] = {"F": "Female", "M": "Male", "X": "Other or not stated"}
FINDINGS: Final = ("normal", "cataract")
"""The clinician's own finding for an eye."""
GRADES: Final = ("none", "mild", "moderate", "severe")

# --- the model -------------------------------------------------------------------------------

DEMO_WARNING: Final = "Demonstration model trained on synthetic images. Not for clinical use."

# --- the attention check -----------------------------------------------------------------------

ON_LENS: Final = "on lens"
PARTLY: Final = "partly on lens"
OFF_BORDER: Final = "off lens: image border"
OFF_SKIN: Final = "off lens: lids or skin"
DIFFUSE: Final = "diffuse"
NOT_FOUND: Final = "lens not found"
VERDICTS: Final = (ON_LENS, PARTLY, OFF_BORDER, OFF_SKIN, DIFFUSE, NOT_FOUND)

# In a fundus photograph the lens is not visible: the same verdicts then mean "inside the field of
# view" and "on the black surround or the camera's text"; these are the words shown for them.
VERDICT_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "external": {v: v for v in VERDICTS},
    "fundus": {
        ON_LENS: "inside the fundus",
        PARTLY: "partly inside the fundus",
        OFF_BORDER: "off the fundus: black border or text",
        OFF_SKIN: "off the fundus: black border or text",
        DIFFUSE: "diffuse",
        NOT_FOUND: "fundus not found",
    },
}


def verdict_label(verdict: str, modality: str | None = "external") -> str:
    """The words shown for a verdict in a photograph of this modality."""
    labels = VERDICT_LABELS["fundus" if attention_modality(modality) == "fundus" else "external"]
    return labels.get(verdict, verdict)


def is_off_target(verdict: str | None) -> bool:
    """True for a verdict that says the attention lies off the lens (or the fundus field)."""
    return verdict in (OFF_BORDER, OFF_SKIN)


FIGURE_LABELS: Final[Mapping[str, str]] = {
    "energy_in_lens": "Attention inside the lens region",
    "energy_in_lens_zone": "Attention in and just around the lens",
    "peak_in_lens": "Strongest point on the lens",
    "energy_in_border": "Attention in the outer 10% border",
    "energy_on_skin": "Attention on lids or skin",
    "spread": "Share of the image holding half the attention",
    "lens_confidence": "Confidence the lens was found",
    "lens_iou": "Overlap of the found lens with the marked pupil (IoU)",
    "peak_in_border": "Strongest point in the border",
}
"""Clinician-facing names of the attention figures, in the order they are shown."""

# A fundus photograph shows no lens: the check measures against the circular field of view, and
# the zone around a lens means nothing there.
FUNDUS_FIGURE_LABELS: Final[Mapping[str, str]] = {
    **{k: v for k, v in FIGURE_LABELS.items() if k != "energy_in_lens_zone"},
    "energy_in_lens": "Attention inside the fundus field",
    "peak_in_lens": "Strongest point inside the fundus field",
    "lens_confidence": "Confidence the fundus field was found",
}


def figure_labels(modality: str | None = "external") -> Mapping[str, str]:
    """The figure labels that apply to a photograph of this modality."""
    return FUNDUS_FIGURE_LABELS if attention_modality(modality) == "fundus" else FIGURE_LABELS


def describe_figures(figures: Mapping[str, Any], modality: str | None = "external") -> list[tuple[str, str]]:
    """(label, formatted value) rows for the figures present, in a fixed order, in the clinician's words."""
    rows: list[tuple[str, str]] = []
    for key, label in figure_labels(modality).items():
        value = figures.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            rows.append((label, "yes" if value else "no"))
        elif isinstance(value, (int, float)):
            rows.append((label, f"{value:.2f}" if key == "lens_iou" else f"{value:.0%}"))
    return rows


# --- the clinician's review, in words (appended for the dashboard) ----------------------------

FINDING_LABELS: Final[Mapping[str, str]] = {"normal": "Normal lens", "cataract": "Cataract"}
"""The clinician's finding as the screen shows it."""
REVIEW_STATUS_LABELS: Final[Mapping[str, str]] = {
    "unreviewed": "Unreviewed",
    "reviewed": "Reviewed, not signed",
    "signed": "Signed",
}
"""Where an eye's review stands: none yet, a draft, or signed."""
WORKLIST_STATUSES: Final = tuple(REVIEW_STATUS_LABELS)
SIGNATURE_MEANING: Final = "Reviewed and approved"
"""What a clinician's signature means (21 CFR Part 11 §11.50): shown with the printed name, date and time."""


# --- who may do what (appended for sign-in) ----------------------------------------------------

ROLES: Final = ("clinician", "viewer", "admin")
"""Roles a signed-in person holds: a clinician reviews and signs, a viewer reads, an admin manages models and users."""
ROLE_LABELS: Final[Mapping[str, str]] = {"clinician": "Clinician", "viewer": "Viewer", "admin": "Administrator"}
"""Each role as the screen shows it."""
UNAUTHENTICATED: Final = "unauthenticated"
"""The mark a review and a report carry when the dashboard ran without sign-in."""
NO_SIGN_IN_NOTICE: Final = (
    "This dashboard runs without sign-in, for one person on this computer: names are typed, not verified, "
    "and reviews are marked unauthenticated."
)
"""What every page says when no identity provider is configured."""


# --- asking the model: the cleared-lens test and typicality -------------------------------------

NOT_ON_LENS: Final = "does not rest on the lens"
"""A cataract call that stands when the found lens is painted clear: the model reads something else."""
NOT_ON_LENS_WARNING: Final = (
    "The cataract call does not rest on the lens: it stands when the lens is painted clear, so the "
    "model reads something else in this photograph, whatever its map shows.")
UNLIKE_TRAINING: Final = "unlike training"
"""A photograph whose typicality score lies above the model's threshold."""
UNLIKE_TRAINING_WARNING: Final = (
    "This photograph is unlike the photographs the model was trained on; its output may mean nothing here.")
TYPICALITY_NOT_AVAILABLE: Final = "not available"
"""What is shown for typicality when the model carries no statistics of its training photographs."""
