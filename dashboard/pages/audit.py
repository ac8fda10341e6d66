"""Audit: a labelled set of photographs as `cataract-cam audit` checks it: suspect labels, attention off the lens."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from components import review_session as rs
from components.attention import MODALITIES
from components.audit import (
    AuditError,
    AuditRow,
    LabelledImage,
    audit,
    ranked,
    read_labelled_folder,
    summary,
    write_csv,
    write_gallery,
)
from components.imaging import IMAGE_EXTENSIONS
from components.records import data_dir
from components.report import MODALITIES as MODALITY_NAMES
from dashboard import state
from models import Classifier

UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
GALLERY_MAX = 24
SOURCES = {"upload": "Upload photographs, one box per label", "folder": "A folder in the data folder"}
DETECT = "detect"  # the modality choice that lets the attention check tell per photograph


def _uploads_to_items(uploads: list[tuple[str, list[Any]]], folder: Path) -> list[LabelledImage]:
    """Write the uploads under ``folder/<i>/`` and read them back as a labelled folder, with the user's names."""
    known: dict[str, tuple[str, str]] = {}
    for i, (label, files) in enumerate(uploads):
        for j, upload in enumerate(files):
            suffix = Path(upload.name).suffix.lower()
            # Numbered folders and files: a class name need not be a safe folder name, and no
            # patient name reaches the disk.
            rel = f"{i}/{j:05d}{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"
            (folder / str(i)).mkdir(exist_ok=True)
            (folder / rel).write_bytes(upload.getvalue())
            known[rel] = (label, upload.name)
    items = read_labelled_folder(folder)
    return [dataclasses.replace(item, label=known[item.file][0], file=known[item.file][1]) for item in items]


def _run(clf: Classifier, items: list[LabelledImage], modality: str | None) -> None:
    bar = st.progress(0.0, text=f"Auditing {len(items)} photographs…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Explained {done} of {total}")

    rows = audit(clf, items, modality=modality, method=st.session_state.get("method", "gradcam"),
                 alpha=float(st.session_state.get("alpha", 0.5)),
                 colormap=st.session_state.get("colormap", "jet"), progress=progress)
    bar.empty()
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        write_csv(rows, Path(tmp) / "audit.csv")
        write_gallery(rows, Path(tmp) / "gallery.html", model_name=clf.name, demo=clf.is_demo)
        st.session_state["audit_csv"] = (Path(tmp) / "audit.csv").read_bytes()
        st.session_state["audit_html"] = (Path(tmp) / "gallery.html").read_bytes()
    # The session keeps a few JPEG panels for the screen, not every row's full picture.
    st.session_state["audit_gallery"] = [(r.file, r.flags, rs.jpeg_bytes(r.panel))
                                         for r in ranked(rows)[:GALLERY_MAX] if r.panel is not None]
    for r in rows:
        r.panel = None
    st.session_state["audit_rows"] = rows
    st.session_state["audit_summary"] = summary(rows)
    st.session_state["audit_model"] = f"{clf.name} · weights {clf.weights_sha256[:12]}"


def results(rows: list[AuditRow], stats: dict[str, Any]) -> None:
    st.subheader(f"Results: {stats['n']} photographs")
    st.caption(f"Model: {st.session_state.get('audit_model', '')}")
    figures = [("Photographs", str(stats["n"])), ("Attention on the lens", f"{stats['on_lens_rate']:.1%}"),
               ("Suspect labels", str(len(stats["suspect_labels"]))),
               ("Attention off lens", str(len(stats["off_lens"])))]
    if stats["lens_iou_median"] is not None:
        figures.append(("Lens found vs pupil mask (median IoU)", f"{stats['lens_iou_median']:.3f}"))
    for column, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(label, value)
    st.caption("Verdicts: " + " · ".join(f"{verdict} {count}" for verdict, count in stats["verdicts"].items()))

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
    percent = {"min_value": 0.0, "max_value": 1.0, "format": "percent"}
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Confidence": st.column_config.ProgressColumn("Confidence", **percent),
        "P(label)": st.column_config.NumberColumn("P(label)", format="percent",
                                                  help="The model's probability for the photograph's label"),
    })
    csv_col, html_col = st.columns(2)
    csv_col.download_button("Download audit.csv", data=st.session_state.get("audit_csv", b""),
                            file_name="audit.csv", mime="text/csv", icon=":material/download:",
                            on_click="ignore")
    html_col.download_button("Download the gallery (HTML)", data=st.session_state.get("audit_html", b""),
                             file_name="audit_gallery.html", mime="text/html", icon=":material/download:",
                             on_click="ignore", help="One file that opens in any browser, without a server.")

    gallery = st.session_state.get("audit_gallery") or []
    flagged = sum(1 for r in rows if r.flags)
    if not flagged:
        st.success("No photograph was flagged.")
        return
    st.subheader("Flagged photographs")
    # Unreadable photographs are flagged but have no picture; the table lists them.
    shown = f"; {len(gallery)} of {flagged} shown" if flagged > len(gallery) else ""
    st.caption(f"Most suspect first{shown}.")
    columns = st.columns(2)
    for i, (file, flags, jpeg) in enumerate(gallery):
        with columns[i % 2]:
            st.image(jpeg, width="stretch")
            # File names are the user's text: shown as plain text, never as Markdown.
            st.text(f"{file}\n{'; '.join(flags)}")


st.title("Audit")
state.show_flashes()
clf, problem = state.classifier()
state.model_notice(clf, problem)
st.caption("Checks a labelled set of photographs: where the model confidently disagrees with the label "
           "(suspect label), where its attention lies off the lens, and which photographs cannot be graded.")

source = st.radio("Photographs", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="audit_source")
uploads: list[tuple[str, list[Any]]] = []
folder: Path | None = None
if source == "upload":
    if clf is not None:
        boxes = st.columns(len(clf.class_names))
        for i, (box, name) in enumerate(zip(boxes, clf.class_names, strict=True)):
            files = box.file_uploader(f"Labelled {name}", type=UPLOAD_TYPES, accept_multiple_files=True,
                                      key=f"audit_upload_{i}")
            uploads.append((name, list(files or [])))
    ready = any(files for _, files in uploads)
else:
    folder_name = st.text_input("Folder inside the data folder", key="audit_folder",
                                placeholder="e.g. audits/set1",
                                help="One sub-folder per label (for example cataract/ and normal/), "
                                     "and optionally masks/ with <name>_pupil.png for each photograph.")
    if folder_name.strip():
        folder, refusal = state.data_subfolder(folder_name)
        if refusal:
            st.error(refusal)
    ready = folder is not None
modality = st.selectbox("Modality", [DETECT, *MODALITIES], key="audit_modality",
                        format_func=lambda m: "Tell per photograph" if m == DETECT else MODALITY_NAMES[m],
                        help="Where the attention should lie: the lens in an external or slit-lamp "
                             "photograph, the fundus field in a fundus photograph.")
st.caption("Uses the Review page's method, colormap and transparency.")

if st.button("Run audit", type="primary", icon=":material/play_arrow:", disabled=clf is None or not ready):
    assert clf is not None
    chosen = None if modality == DETECT else modality
    try:
        if source == "upload":
            with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
                _run(clf, _uploads_to_items(uploads, Path(tmp)), chosen)
        else:
            assert folder is not None
            _run(clf, read_labelled_folder(folder), chosen)
    except AuditError as error:
        st.error(str(error))

rows = st.session_state.get("audit_rows")
if rows:
    results(rows, st.session_state["audit_summary"])
