"""One eye's section: its examination, the model's result, the three panels, the checks and the review."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer

from components.explanation.cam import METHOD_LABELS
from components.report.content import NOT_REVIEWED, NOT_SIGNED, EyeFindings, ReviewInfo
from components.report.layout import Builder, box
from components.report.panels import Panels, RegionOutline
from components.report.results import EyeResult
from components.report.style import ALERT, ALERT_BG, WARN, WARN_BG, coloured
from components.report.text import DOT, clean, fmt_datetime, fmt_value, label, markup
from components.screening.decision import ScreeningDecision, format_probability, format_threshold
from components.screening.notes import note_paragraphs
from components.screening.vocabulary import EYE_LABELS, MODALITY_LABELS, SIGNATURE_MEANING


def eye_section(b: Builder, result: EyeResult, positive_class: str) -> None:
    """Heading, examination, result and panels on one page; the checks and the review may flow on."""
    eye = result.eye
    block: list[Flowable] = [*b.section(EYE_LABELS[eye.eye]), *_examination(b, eye)]
    block.append(Paragraph("Model result", b.s["h3"]))
    block += _model_result(b, eye, result.decision, positive_class)
    block.append(Spacer(1, 6))
    block.append(Panels(eye.image, eye.explanation, eye.colormap, eye.alpha))
    block.append(Spacer(1, 4))
    block += _panel_captions(b, eye)
    b.add(KeepTogether(block))
    if eye.attention is not None:
        b.add(*mapping_block(b, "Attention check", eye.attention.report_fields()))
        b.add(*_region_block(b, eye))
    if eye.faithfulness:
        b.add(*mapping_block(b, "Faithfulness", eye.faithfulness))
    b.add(*review_block(b, eye.review))


def _examination(b: Builder, eye: EyeFindings) -> list[Flowable]:
    pairs: list[tuple[str, str | Flowable]] = []
    if eye.exam_date is not None:
        pairs.append(("Exam date", eye.exam_date.isoformat()))
    if eye.modality and eye.modality.strip():
        pairs.append(("Modality", markup(MODALITY_LABELS.get(eye.modality.strip().lower(), eye.modality))))
    if eye.gradable:
        quality = "Gradable"
    else:
        reason = (eye.ungradable_reason or "").strip()
        quality = "<b>Ungradable</b>" + (f": {markup(reason)}" if reason else "")
    pairs.append(("Image quality", quality))
    return b.fields(pairs, columns=2, label_w=24 * mm)


def _model_result(b: Builder, eye: EyeFindings, d: ScreeningDecision, positive_class: str) -> list[Flowable]:
    expl = eye.explanation
    if expl is None or d.p is None:
        return [Paragraph("No model result for this eye.", b.s["body"])]
    p = d.p
    verdict = "At or above threshold: cataract suspected" if d.positive else "Below threshold: no cataract detected"
    colour = "#B3261E" if d.positive else "#1E6B35"
    line = f'Result: <font color="{colour}"><b>{verdict}</b></font>'
    if d.indeterminate:
        line += '&nbsp;&nbsp;<font color="#8A4B00"><b>INDETERMINATE</b></font> (within the band around the threshold)'
    low, high = (format_threshold(limit) for limit in d.band_limits)
    pairs: list[tuple[str, str | Flowable]] = [
        (f"Probability of {positive_class.lower()}", f"<b>{format_probability(p)}</b> ({p * 100:.1f}%)"),
        ("Predicted class", f"{markup(expl.prediction)} (probability {format_probability(expl.confidence)})"),
        ("Operating threshold", format_threshold(d.threshold)),
        ("Indeterminate band", f"threshold \u00b1 {format_threshold(d.band)} ({low} to {high})"),
    ]
    out: list[Flowable] = [Paragraph(line, b.s["body"]), Spacer(1, 2)]
    out += b.fields(pairs, columns=2, label_w=35 * mm)
    if not eye.gradable:
        warning = "The image is ungradable, so the model's output for it is not reliable."
        out.append(Paragraph(warning, coloured(b.s["small"], ALERT, "ungr")))
    if eye.typicality and eye.typicality.get("text"):
        unlike = bool(eye.typicality.get("unlike_training"))
        style = coloured(b.s["small"], ALERT, "typ") if unlike else b.s["small"]
        out.append(Paragraph(markup(str(eye.typicality["text"])), style))
    return out


def _panel_captions(b: Builder, eye: EyeFindings) -> list[Flowable]:
    expl = eye.explanation
    if expl is None:
        return []
    method = METHOD_LABELS.get(expl.method, expl.method)
    caption = (
        f"<b>Method:</b> {escape(method)}{DOT}<b>Layer:</b> {markup(expl.layer)}"
        f"{DOT}<b>Target class:</b> {markup(expl.target)}{DOT}"
        f"<b>Colormap:</b> {escape(eye.colormap)}{DOT}"
        f"<b>Transparency \u03b1:</b> {eye.alpha:.2f}"
    )
    note = (
        "Colour bar: map value normalised per image, 0 (low) to 1 (high); \u03b1 is the "
        "heatmap's weight in the overlay. The heatmap shows where the model looked; it is not "
        "an outline of a lesion."
    )
    if expl.is_zero:
        note += " The map is flat: no region drove this class at this layer."
    return [Paragraph(caption, b.s["caption"]), Paragraph(note, b.s["caption"])]


def _region_block(b: Builder, eye: EyeFindings) -> list[Flowable]:
    """The pupil and iris the check used, outlined on the photograph, so a wrong finder shows at a glance."""
    if eye.image is None or eye.attention is None:
        return []
    region = eye.attention.region.as_dict()
    if not region["found"] or region["center"] is None:
        return []
    what = "fundus field (green)" if region.get("modality") == "fundus" else "pupil (green) and iris (blue)"
    caption = (f"Where the check looked: the {what} as the lens finder found them. If the outline misses "
               "the eye, the attention verdict above does not hold.")
    return [Spacer(1, 4), KeepTogether([RegionOutline(eye.image, region), Spacer(1, 3),
                                        Paragraph(escape(caption), b.s["small"])])]


def mapping_block(b: Builder, title: str, data: Mapping[str, Any]) -> list[Flowable]:
    """An attention or faithfulness record, printed as given: verdict first, then its figures."""
    items = list(data.items())
    verdict = next((fmt_value(v) for k, v in items if str(k).lower() == "verdict"), None)
    pairs: list[tuple[str, str | Flowable]] = [
        (label(k), markup(text))
        for k, v in items
        if str(k).lower() != "verdict" and (text := fmt_value(v)) is not None
    ]
    out: list[Flowable] = [Paragraph(escape(title), b.s["h3"])]
    if verdict is not None:
        out.append(Paragraph(f"<b>Verdict:</b> {markup(verdict)}", b.s["body"]))
    return out + b.fields(pairs, columns=2, label_w=34 * mm)


def review_block(b: Builder, review: ReviewInfo | None) -> list[Flowable]:
    """The clinician's review of the eye, or a loud notice that there is none yet."""
    out: list[Flowable] = [Paragraph("Clinician review", b.s["h3"])]
    if review is None:
        notice = [
            Paragraph(NOT_REVIEWED, coloured(b.s["box_big"], ALERT, "nyr")),
            Paragraph("No clinician has reviewed this eye's result yet.", coloured(b.s["small"], ALERT, "nyr_small")),
        ]
        return [*out, box(notice, ALERT, ALERT_BG, b.width * 0.62, line=1.6)]
    if review.signed_at is None:
        out.append(box([Paragraph(NOT_SIGNED, coloured(b.s["box"], WARN, "uns"))], WARN, WARN_BG, b.width * 0.62))
        out.append(Spacer(1, 3))
    out += b.fields(_review_fields(review), columns=1, label_w=30 * mm)
    notes = note_paragraphs(clean(review.notes))
    if notes:
        out.append(Paragraph("Notes", b.s["label"]))
        # One paragraph per line of notes, so long notes can break between pages anywhere; blank runs are
        # collapsed and the number of paragraphs bounded, so the notes take at most about two pages.
        for line in notes:
            out.append(Paragraph(markup(line) if line.strip() else "&nbsp;", b.s["notes"]))
    return out


def _review_fields(review: ReviewInfo) -> list[tuple[str, str | Flowable]]:
    pairs: list[tuple[str, str | Flowable]] = []
    if review.agrees is not None:
        pairs.append(("Agreement", "Agrees with the model" if review.agrees else "Disagrees with the model"))
    if review.finding and review.finding.strip():
        pairs.append(("Finding", markup(review.finding)))
    if review.grade and review.grade.strip():
        pairs.append(("Grade", markup(review.grade)))
    if review.signed_at is not None:
        # The signature's manifestation (21 CFR Part 11 §11.50): printed name, date and time, meaning.
        pairs.append(("Signed by", f"{markup(review.reviewer)}, {escape(fmt_datetime(review.signed_at))}"))
        pairs.append(("Meaning of the signature", SIGNATURE_MEANING))
    else:
        pairs.append(("Drafted by", markup(review.reviewer) + " (not signed)"))
    pairs.append(("Review version", str(int(review.version))))
    return pairs
