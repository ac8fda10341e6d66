"""The report's sections other than the eyes: patient, summary and next step, model, limitations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer

from components.report.content import NOT_REVIEWED, ModelInfo, PatientInfo, ReviewInfo
from components.report.layout import Builder, box, demo_box
from components.report.results import EyeResult
from components.report.style import ALERT, ALERT_BG, OK, OK_BG, coloured
from components.report.text import age, fmt_number, fmt_value, label, markup
from components.screening.decision import FINAL_DECISION, format_probability, format_threshold, next_step
from components.screening.vocabulary import DEMO_WARNING, EYE_LABELS, SEX_LABELS


def patient_section(b: Builder, patient: PatientInfo, reviewer: str | None, generated: datetime) -> None:
    """Who the report is about, and who reviewed it."""
    b.add(*b.section("Patient"))
    pairs: list[tuple[str, str | Flowable]] = [("Patient ID", markup(patient.pseudo_id))]
    if patient.name and patient.name.strip():
        pairs.append(("Name", markup(patient.name)))
    if patient.birth_date is not None:
        years = age(patient.birth_date, generated.date())
        text = patient.birth_date.isoformat() + (f" (age {years})" if years is not None else "")
        pairs.append(("Birth date", text))
    if patient.sex and patient.sex.strip():
        sex = patient.sex.strip()
        pairs.append(("Sex", markup(SEX_LABELS.get(sex.upper(), sex))))
    if reviewer and reviewer.strip():
        pairs.append(("Reviewing clinician", markup(reviewer)))
    b.add(*b.fields(pairs, columns=1, label_w=36 * mm))


def _review_summary(review: ReviewInfo | None) -> str:
    if review is None:
        return f'<font color="#B3261E"><b>{NOT_REVIEWED}</b></font>'
    parts = []
    if review.agrees is not None:
        parts.append("Agrees" if review.agrees else "Disagrees")
    if review.finding and review.finding.strip():
        parts.append(markup(review.finding))
    parts.append("signed" if review.signed_at is not None else "not signed")
    return "; ".join(parts)


def summary_section(b: Builder, results: Sequence[EyeResult], positive_class: str) -> None:
    """One row per eye, then the suggested next step and why, from the screening decisions."""
    b.add(*b.section("Summary and recommendation"))
    rows = []
    for r in results:
        d = r.decision
        quality = "Gradable" if r.eye.gradable else "Ungradable"
        p = format_probability(d.p) if d.p is not None else "\u2013"
        rows.append([EYE_LABELS[r.eye.eye], quality, p, escape(d.label), _review_summary(r.eye.review)])
    w = b.width
    header = ["Eye", "Image quality", f"P({positive_class.lower()})", "Model finding", "Clinician review"]
    b.add(b.grid(header, rows, [0.17 * w, 0.14 * w, 0.12 * w, 0.27 * w, 0.30 * w]))
    b.add(Spacer(1, 7))
    decisions = [r.decision for r in results]
    refer = any(d.refer for d in decisions)
    reasons = [reason for d in decisions for reason in d.reasons]
    fg, bg = (ALERT, ALERT_BG) if refer else (OK, OK_BG)
    content: list[Flowable] = [
        Paragraph("Suggested next step", coloured(b.s["label"], fg, "next_label")),
        Paragraph(escape(next_step(decisions)), coloured(b.s["box_big"], fg, "next")),
    ]
    if reasons:
        content.append(Paragraph("Because: " + escape("; ".join(reasons)) + ".", b.s["body"]))
    if any(d.indeterminate for d in decisions):
        content.append(
            Paragraph(
                "At least one result is indeterminate (probability within "
                f"\u00b1{format_threshold(decisions[0].band)} "
                "of the threshold) and deserves particular attention.",
                b.s["body"],
            )
        )
    content.append(Paragraph(f"<b>{escape(FINAL_DECISION)}</b>", b.s["body"]))
    b.add(box(content, fg, bg, b.width))


def model_section(b: Builder, model: ModelInfo) -> None:
    """The model's identity and card, kept together, then its performance when the card has any."""
    head = b.section("Model")
    if model.is_demo:
        head += [demo_box(b), Spacer(1, 5)]
    b.add(KeepTogether([*head, *b.fields(_model_fields(b, model), columns=1, label_w=36 * mm)]))
    rows = _metric_rows(model.card or {})
    if rows:
        b.add(Spacer(1, 5), Paragraph("Performance (from the model card)", b.s["h3"]))
        widths = [0.34 * b.width, 0.2 * b.width, 0.3 * b.width]
        b.add(b.grid(["Metric", "Value", "95% confidence interval"], rows, widths))


def _model_fields(b: Builder, model: ModelInfo) -> list[tuple[str, str | Flowable]]:
    card = model.card or {}
    pairs: list[tuple[str, str | Flowable]] = [
        ("Name", markup(model.name)),
        ("Version", markup(model.version or "unversioned")),
    ]
    if model.weights_sha256:
        pairs.append(("Weights SHA-256", Paragraph(escape(model.weights_sha256), b.s["mono"])))
    for key, name in (("architecture", "Architecture"), ("input_size", "Input size")):
        text = fmt_value(card.get(key))
        if text is not None:
            pairs.append((name, markup(text + (" px" if key == "input_size" and text.isdigit() else ""))))
    pairs.append(("Operating threshold", format_threshold(model.threshold)))
    training = card.get("training_data")
    if isinstance(training, Mapping):
        lines = [
            f"{escape(label(k))}: {markup(v)}"
            for k, v in ((k, fmt_value(v)) for k, v in training.items())
            if v is not None
        ]
        if lines:
            pairs.append(("Training data", "<br/>".join(lines)))
    elif (text := fmt_value(training)) is not None:
        pairs.append(("Training data", markup(text)))
    if (text := fmt_value(card.get("intended_use"))) is not None:
        pairs.append(("Intended use", markup(text)))
    return pairs


def _metric_rows(card: Mapping[str, Any]) -> list[list[str | Flowable]]:
    """Metric, value and 95% interval for each numeric metric on the card."""
    metrics = card.get("metrics")
    rows: list[list[str | Flowable]] = []
    if not isinstance(metrics, Mapping):
        return rows
    for name, entry in metrics.items():
        value, ci = (entry.get("value"), entry.get("ci95")) if isinstance(entry, Mapping) else (entry, None)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        ci_text = "\u2013"
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
            ci_text = f"{fmt_number(float(ci[0]))} to {fmt_number(float(ci[1]))}"
        rows.append([markup(label(name)), fmt_number(float(value)), ci_text])
    return rows


_LIMITATIONS = (
    "<b>Decision support, not a diagnosis.</b> The model's output and this report support "
    "a qualified clinician; they do not diagnose cataract or any other condition, and they "
    "do not replace an eye examination.",
    "<b>A heatmap is not a lesion outline.</b> Grad-CAM shows which parts of the photograph "
    "most influenced the model's output. It does not delineate a lens opacity, measure its "
    "extent or grade its severity, and a plausible-looking heatmap does not prove the "
    "result is right.",
    "<b>Regulatory status.</b> cataract-cam is research software. It is not a cleared or "
    "approved medical device (it has no FDA clearance and no CE marking) and must not be "
    "the sole basis of a clinical decision.",
    "<b>Scope of the model.</b> Results hold at best for photographs like those the model was "
    "trained and evaluated on (see Model); other cameras, image types, populations and image "
    "quality can lower its accuracy. Results near the threshold are the least certain.",
)


def limitations_section(b: Builder, model: ModelInfo) -> None:
    """What the report and the model cannot do, and the demo warning when it applies."""
    b.add(*b.section("Limitations and disclaimer"))
    bullets = list(_LIMITATIONS)
    if model.is_demo:
        bullets.append(f"<b>{escape(DEMO_WARNING)}</b> Its results demonstrate the software only.")
    for text in bullets:
        b.add(Paragraph(text, b.s["bullet"], bulletText="\u2022"))
