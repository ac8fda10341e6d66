"""The Batch, Audit and Compare pages' runs, without Streamlit: the engine's results as a page keeps and shows them.

The same run on a Dask cluster is ``components.cluster.runs``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.base.classifier import ClassifierLike
from components.explanation.cam import METHOD_LABELS
from components.explanation.overlay import blend
from components.imaging.loading import ImageError, decode_image
from components.records import data_dir
from components.workflows import review as rs
from components.workflows.audit import (
    AuditRow,
    LabelledImage,
    audit,
    compare,
    ranked,
    summary,
    write_csv,
    write_gallery,
)
from components.workflows.batch import BatchItem, explain_files, write_summary
from models import Classifier

Progress = Callable[[int, int], None]
"""Told (done, total) after each photograph."""


class Upload(Protocol):
    """What a run reads from an uploaded file (Streamlit's UploadedFile has it)."""

    @property
    def name(self) -> str: ...

    def getvalue(self) -> bytes: ...


def model_title(clf: ClassifierLike) -> str:
    """A model as the pages name it: its name and the start of its weights' SHA-256."""
    return f"{clf.name} · weights {clf.weights_sha256[:12]}"

THUMB_SIDE = 320
COMPARE_MIN_SIDE = 1024  # the comparison picture is at most 512 pixels; the attention check works smaller
BATCH_GALLERY_MAX = 60
AUDIT_GALLERY_MAX = 24


@dataclass(frozen=True)
class Look:
    """How the maps are drawn: the Review page's method, colormap and transparency."""

    method: str = "gradcam"
    colormap: str = "jet"
    alpha: float = 0.5


# --- batch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """One row per photograph (its overlay thumbnail under ``_thumb``), the CSV, and the method's name."""

    rows: list[dict[str, object]]
    csv: bytes
    method: str


def batch_row(item: BatchItem, class_names: Sequence[str], look: Look) -> dict[str, object]:
    """One photograph's row on the Batch page: the model's answer, its overlay thumbnail, the attention verdict."""
    ex = item.explanation
    thumb = verdict = None
    if ex is not None and item.image is not None:
        small = rs.downscale(item.image, THUMB_SIDE)
        # Kept as JPEG bytes in the session: a few KB each, even for a long batch.
        thumb = rs.jpeg_bytes(blend(small, ex.cam, alpha=look.alpha, colormap=look.colormap))
        checked = item.attention if item.attention is not None else rs.attention_for(item.image, ex)
        verdict = checked.label
    return {
        "File": item.file,
        "Prediction": ex.prediction if ex else None,
        "Confidence": ex.confidence if ex else None,
        **{f"P({c})": (ex.probabilities[c] if ex else None) for c in class_names},
        "Error": item.error or "",
        "_thumb": thumb,
        "Attention": verdict,
    }


def batch_run(clf: Classifier, files: Sequence[Path], names: Sequence[str], look: Look,
              progress: Progress | None = None) -> BatchResult:
    """Explain the files as `cataract-cam batch` does, naming each by the name the user knows, not a temp path."""
    items: list[BatchItem] = []
    rows: list[dict[str, object]] = []
    # keep_images: the gallery needs the photograph, shrunk to a thumbnail at once.
    for done, item in enumerate(explain_files(clf, files, method=look.method, keep_images=True, attention=True),
                                start=1):
        item.file = names[done - 1]
        rows.append(batch_row(item, clf.class_names, look))
        item.image = None
        items.append(item)
        if progress is not None:
            progress(done, len(files))
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        path = Path(tmp) / "summary.csv"
        write_summary(items, clf.class_names, path)
        csv = path.read_bytes()
    return BatchResult(rows, csv, METHOD_LABELS.get(look.method, look.method))


def batch_table(rows: Sequence[dict[str, object]]) -> dict[str, list[object]]:
    """The batch's columns, without the thumbnails."""
    return {key: [r.get(key) for r in rows] for key in rows[0] if key != "_thumb"}


def batch_gallery(rows: Sequence[dict[str, object]]) -> list[tuple[bytes, str]]:
    """(overlay JPEG, caption) for the first readable photographs, highest confidence first; captions hold the
    user's file names as written (escape them where text renders Markdown)."""
    shown: list[tuple[float, bytes, str]] = []
    for row in rows:
        thumb, confidence = row["_thumb"], row["Confidence"]
        if not isinstance(thumb, bytes):
            continue
        p = float(confidence) if isinstance(confidence, (int, float)) else 0.0
        shown.append((p, thumb, f"{row['File']}: {row['Prediction']} ({p:.0%})"))
        if len(shown) == BATCH_GALLERY_MAX:
            break
    shown.sort(key=lambda t: -t[0])
    return [(thumb, caption) for _, thumb, caption in shown]


# --- audit ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    """The audit's rows (pictures dropped), its summary, the downloads and the flagged panels as JPEG."""

    rows: list[AuditRow]
    summary: dict[str, Any]
    csv: bytes
    html: bytes
    gallery: list[tuple[str, list[str], bytes]]
    model: str


def audit_run(clf: Classifier, items: Sequence[LabelledImage], modality: str | None, look: Look,
              progress: Progress | None = None) -> AuditResult:
    """Audit the set as `cataract-cam audit` does (raises AuditError)."""
    rows = audit(clf, items, modality=modality, method=look.method, alpha=look.alpha, colormap=look.colormap,
                 progress=progress)
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        write_csv(rows, Path(tmp) / "audit.csv")
        # One page: the page offers the gallery as one file to download (a page's runs are capped).
        write_gallery(rows, Path(tmp) / "gallery.html", model_name=clf.name, demo=clf.is_demo,
                      page_size=max(1, len(rows)))
        csv = (Path(tmp) / "audit.csv").read_bytes()
        html = (Path(tmp) / "gallery.html").read_bytes()
    # The session keeps a few JPEG panels for the screen, not every row's full picture.
    gallery = [(r.file, r.flags, rs.jpeg_bytes(r.panel))
               for r in ranked(rows)[:AUDIT_GALLERY_MAX] if r.panel is not None]
    for r in rows:
        r.panel = None
    return AuditResult(rows, summary(rows), csv, html, gallery, model_title(clf))


def audit_figures(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The audit's headline figures, in the order shown."""
    figures = [("Photographs", str(stats["n"])), ("Attention on the lens", f"{stats['on_lens_rate']:.1%}"),
               ("Suspect labels", str(len(stats["suspect_labels"]))),
               ("Attention off lens", str(len(stats["off_lens"])))]
    if stats["lens_iou_median"] is not None:
        figures.append(("Lens found vs pupil mask (median IoU)", f"{stats['lens_iou_median']:.3f}"))
    return figures


def audit_table(rows: Sequence[AuditRow]) -> dict[str, list[Any]]:
    """The audit's columns; the error column only when a photograph could not be read."""
    table: dict[str, list[Any]] = {
        "File": [r.file for r in rows],
        "Label": [r.label for r in rows],
        "Prediction": [r.prediction for r in rows],
        "Confidence": [r.confidence for r in rows],
        "P(label)": [r.label_probability for r in rows],
        "Attention": [r.verdict_label or r.verdict for r in rows],
        "Flags": ["; ".join(r.flags) for r in rows],
    }
    if any(r.error for r in rows):
        table["Error"] = [r.error or "" for r in rows]
    return table


# --- compare ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareResult:
    """Per photograph the comparison's figures and its picture as JPEG; the files that could not be read."""

    rows: list[tuple[dict[str, Any], bytes | None]]
    unreadable: list[str]
    models: tuple[str, str]


def compare_run(clf_a: Classifier, clf_b: Classifier, uploads: Sequence[Upload], modality: str | None,
                look: Look) -> CompareResult:
    """Both models on the readable uploads, as `cataract-cam compare` does (raises ExplainError).

    One photograph at a time, decoded no larger than its uses need: only one is ever held decoded.
    """
    rows: list[tuple[dict[str, Any], bytes | None]] = []
    unreadable: list[str] = []
    for upload in uploads:
        try:
            pixels = decode_image(upload.getvalue(), min_side=COMPARE_MIN_SIDE).pixels
        except ImageError:
            unreadable.append(upload.name)
            continue
        (found,) = compare(clf_a, clf_b, [pixels], files=[upload.name], names=("Model A", "Model B"),
                           modality=modality, method=look.method, alpha=look.alpha, colormap=look.colormap)
        del pixels
        # Pictures are kept as JPEG bytes: a few hundred KB each rather than the decoded arrays.
        rows.append((found.as_dict(), rs.jpeg_bytes(found.picture) if found.picture is not None else None))
    return CompareResult(rows, unreadable, (model_title(clf_a), model_title(clf_b)))


def compare_figures(found: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """How often the two models agree and how alike their maps are, over all photographs."""
    agree = sum(1 for r in found if r["agree"])
    return [("Same prediction", f"{agree} of {len(found)}"),
            ("Map similarity (mean Spearman)", f"{sum(r['spearman'] for r in found) / len(found):.3f}"),
            ("Top 20% overlap (mean)", f"{sum(r['top20_overlap'] for r in found) / len(found):.1%}")]


def compare_table(found: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The comparison's columns, model A beside model B."""
    columns = (("File", "file"), ("Model A", "prediction_a"), ("Confidence A", "confidence_a"),
               ("Model B", "prediction_b"), ("Confidence B", "confidence_b"), ("Agree", "agree"),
               ("Spearman", "spearman"), ("Top 20% overlap", "top20_overlap"),
               ("Attention A", "verdict_a"), ("Attention B", "verdict_b"))
    return {title: [r[key] for r in found] for title, key in columns}
