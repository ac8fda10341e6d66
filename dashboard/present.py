"""How the dashboard puts results into words, colours and table columns; computed here, drawn by the widgets."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from components.explanation.cam import METHOD_LABELS, Explanation
from components.lens.attention import AttentionResult
from components.records import ExamRecord, PatientRecord, ReviewRecord, WorklistRow
from components.screening.decision import FINAL_DECISION, ScreeningDecision, format_threshold
from components.screening.vocabulary import (
    EYE_LABELS,
    FINDING_LABELS,
    MODALITY_LABELS,
    NOT_FOUND,
    ON_LENS,
    REVIEW_STATUS_LABELS,
    SEX_LABELS,
    SIGNATURE_MEANING,
    attention_modality,
    is_off_target,
)
from models import Classifier

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """User text (a file name) made safe for a Streamlit caption, which renders Markdown and colour codes."""
    return _MARKDOWN.sub(r"\\\1", text)


def md_id(text: str) -> str:
    """A pseudonymous ID (letters, digits, '-', '_', '.') made safe inside Markdown."""
    return text.replace("_", "\\_")


def sentence(error: Exception) -> str:
    """The record store speaks in lower-case clauses; the screen shows sentences."""
    text = str(error).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


# --- one eye on the review page -----------------------------------------------------------------


def where(modality: str | None) -> str:
    """What the attention should lie on, in words: the lens, or the fundus field."""
    return "the fundus field" if attention_modality(modality) == "fundus" else "the lens"


BadgeColour = Literal["green", "red", "gray", "orange"]


@dataclass(frozen=True)
class AttentionBadge:
    """The attention check as the screen shows it: a badge, its figures and, when off target, a warning."""

    text: str
    colour: BadgeColour
    figures: str
    warning: str | None


def attention_badge(attention: AttentionResult) -> AttentionBadge:
    """Green on the lens, red off it, gray when no lens was found, orange in between."""
    verdict, modality, label = attention.verdict, attention.modality, attention.label
    colour: BadgeColour
    if verdict == ON_LENS:
        colour = "green"
    elif is_off_target(verdict):
        colour = "red"
    else:
        colour = "gray" if verdict == NOT_FOUND else "orange"
    figures = " · ".join(f"{name}: {value}" for name, value in attention.rows())
    warning = None
    if is_off_target(verdict):
        place = where(modality)
        warning = (f"The model's attention lies off {place}: the result may rest on something other than "
                   f"{place}. Check the photograph before relying on it.")
    return AttentionBadge(f"Attention: {label}", colour, figures, warning)


@dataclass(frozen=True)
class DecisionView:
    """The screening decision in the screen's words: a headline and the line that explains it."""

    headline: str  # Markdown: our own words only, never user text
    detail: str


def decision_view(decision: ScreeningDecision, positive_class: str) -> DecisionView:
    """The decision as the report words it: finding, next step, the threshold it rests on and why."""
    # The finding is coloured by what the model found, the next step by whether it refers: a
    # negative finding with attention off the lens still refers.
    colour = "red" if decision.positive else "orange" if decision.indeterminate else "green"
    step = "red" if decision.refer else "green"
    headline = (f"Model finding: :{colour}[**{decision.label}**] · "
                f"Suggested next step: :{step}[**{decision.next_step}**]")
    low, high = decision.band_limits
    parts = []
    if decision.p is not None:
        parts.append(f"P({plain(positive_class)}) {decision.p:.1%} against the operating threshold "
                     f"{format_threshold(decision.threshold)}; results between {format_threshold(low)} and "
                     f"{format_threshold(high)} are indeterminate.")
    if decision.reasons:
        parts.append("Because: " + "; ".join(decision.reasons) + ".")
    parts.append(FINAL_DECISION)
    return DecisionView(headline, " ".join(parts))


def map_caption(explanation: Explanation, image_size: tuple[int, int], colormap: str, alpha: float) -> str:
    """What the three panels show, and what a heatmap is not."""
    method = METHOD_LABELS.get(explanation.method, explanation.method)
    explained = "the predicted class" if explanation.target == explanation.prediction else plain(explanation.target)
    note = " The map is flat: nothing in the photograph raised this class's score." if explanation.is_zero else ""
    return (f"{method} at layer {plain(explanation.layer)}, explaining {explained}; colormap {colormap}, "
            f"transparency {alpha:.2f}. Photograph {image_size[0]}×{image_size[1]} px, shown reduced.{note} "
            "A heatmap shows where the model looked; it is not a lesion outline.")


# --- records ------------------------------------------------------------------------------------


def review_rows(review: ReviewRecord) -> dict[str, str]:
    """One review version as a two-column table: user text stays plain text there."""
    rows = {
        "Version": str(review.version),
        "Status": "Signed" if review.status == "signed" else "Draft (not signed)",
        "Reviewer": review.reviewer,
        "Agrees with the model": "Yes" if review.agrees else "No",
        "Finding": FINDING_LABELS[review.finding],
        "Grade": review.grade.capitalize(),
        "Notes": review.notes or "—",
    }
    if review.signed_at is not None:
        # The signature's manifestation (21 CFR Part 11 §11.50): printed name, date and time, meaning.
        rows["Signed by"] = review.reviewer
        rows["Signed on"] = review.signed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        rows["Meaning of the signature"] = SIGNATURE_MEANING
    return rows


def patient_details(patient: PatientRecord) -> str:
    """Name, birth date and sex, those recorded; empty when none is."""
    details = [patient.name or ""]
    if patient.birth_date is not None:
        details.append(f"born {patient.birth_date.isoformat()}")
    if patient.sex:
        details.append(SEX_LABELS.get(patient.sex, patient.sex))
    return " · ".join(d for d in details if d)


def exam_label(exam: ExamRecord) -> str:
    """An exam in a picker: its date and the kind of photograph."""
    return f"{exam.exam_date.isoformat()} · {MODALITY_LABELS[exam.modality]}"


def _result(prediction: str | None, confidence: float | None) -> str:
    return "—" if prediction is None or confidence is None else f"{prediction} ({confidence:.0%})"


def worklist_table(rows: Sequence[WorklistRow]) -> dict[str, list[object]]:
    """The worklist's columns: st.dataframe shows every cell as plain text, names included."""
    return {
        "Patient ID": [r.pseudo_id for r in rows],
        "Name": [r.name or "" for r in rows],
        "Eyes": [r.n_eyes for r in rows],
        "Exams": [r.n_exams for r in rows],
        "Last exam": [r.last_exam_date for r in rows],
        EYE_LABELS["OD"]: [_result(r.od_prediction, r.od_confidence) for r in rows],
        EYE_LABELS["OS"]: [_result(r.os_prediction, r.os_confidence) for r in rows],
        "Review": [REVIEW_STATUS_LABELS[r.review_status] for r in rows],
    }


# --- the model card ---------------------------------------------------------------------------


CARD_TEXT_FIELDS = (
    ("intended_use", "Intended use"),
    ("training_data", "Training data"),
    ("limitations", "Known limits"),
    ("architecture", "Architecture"),
    ("training_time", "Training time"),
)


def card_text(value: Any) -> str:
    """A card field as plain text: a string as written, a list as bullets, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(f"- {v}" for v in value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def card_overview(clf: Classifier) -> dict[str, str]:
    """The model's classes, input, threshold, layer and version."""
    positive = clf.positive_index
    return {
        "Classes": ", ".join(clf.class_names),
        "Input size": f"{clf.input_size} × {clf.input_size} px",
        "Operating threshold": f"{clf.threshold:.3f} on P({clf.class_names[positive]})"
        if positive is not None else f"{clf.threshold:.3f}",
        "Grad-CAM layer": clf.target_layer,
        "Version": str(clf.card.get("version", "unversioned")),
    }


def metric_rows(metrics: Mapping[str, Any]) -> dict[str, list[str]]:
    """The card's metrics with their 95% intervals; a confusion matrix or a curve is not one number."""
    names, values, intervals = [], [], []
    for name, value in metrics.items():
        point, interval = value, ""
        if isinstance(value, Mapping):
            point = value.get("value", value.get("point", ""))
            ci = value.get("ci95") or value.get("ci")
            if isinstance(ci, (list, tuple)) and len(ci) == 2:
                interval = f"{float(ci[0]):.3f} – {float(ci[1]):.3f}"
        if isinstance(point, float):
            point = f"{point:.3f}"
        elif isinstance(point, (dict, list)):
            continue
        names.append(str(name))
        values.append(str(point))
        intervals.append(interval)
    return {"Metric": names, "Value": values, "95% interval": intervals}


def card_plots(clf: Classifier) -> list[Path]:
    """The PNG plots the card names, and those named after the checkpoint, beside the checkpoint only."""
    if clf.path is None:
        return []
    folder = clf.path.parent.resolve()
    listed = clf.card.get("plots") or []
    found: list[Path] = []
    for name in listed if isinstance(listed, list) else []:
        candidate = (folder / str(name)).resolve()
        # Only files beside the checkpoint: a card cannot point the page elsewhere on the server.
        if candidate.parent == folder and candidate.suffix.lower() == ".png" and candidate.is_file():
            found.append(candidate)
    found += sorted(p for p in folder.glob(f"{clf.path.stem}*.png") if p.resolve() not in found)
    return found
