"""Compare: this session's model and another checkpoint on the same photographs, as `cataract-cam compare` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from components import review_session as rs
from components.attention import MODALITIES
from components.audit import compare
from components.gradcam import ExplainError
from components.imaging import IMAGE_EXTENSIONS, ImageError, decode_image
from components.report import MODALITIES as MODALITY_NAMES
from dashboard import state
from models import CheckpointError, Classifier

UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
SOURCES = {"server": "A checkpoint on the server (models/weights/)", "upload": "Upload a checkpoint"}
DETECT = "detect"  # the modality choice that lets the attention check tell per photograph


def _model_b(source: str) -> Classifier | None:
    """Model B as chosen on the page, validated by the loader (weights only, never code); None after an error."""
    try:
        if source == "upload":
            upload = st.session_state.get("compare_b_upload")
            return None if upload is None else state.load_checkpoint_bytes(upload.getvalue())
        path = st.session_state.get("compare_b_file")
        return None if path is None else state.load_checkpoint_file(Path(path))
    except CheckpointError as error:
        st.error(f"Model B cannot be used. {error}")
        return None


def _decode(uploads: list[Any]) -> tuple[list[str], list[Any], list[str]]:
    names, images, unreadable = [], [], []
    for upload in uploads:
        try:
            images.append(decode_image(upload.getvalue()).pixels)
            names.append(upload.name)
        except ImageError:
            unreadable.append(upload.name)
    return names, images, unreadable


def _run(clf_a: Classifier, clf_b: Classifier, uploads: list[Any], modality: str | None) -> None:
    names, images, unreadable = _decode(uploads)
    st.session_state["compare_unreadable"] = unreadable
    st.session_state["compare_rows"] = []
    if not images:
        return
    with st.spinner(f"Explaining {len(images)} photographs with both models…"):
        found = compare(clf_a, clf_b, images, files=names, names=("Model A", "Model B"), modality=modality,
                        method=st.session_state.get("method", "gradcam"),
                        alpha=float(st.session_state.get("alpha", 0.5)),
                        colormap=st.session_state.get("colormap", "jet"))
    # Pictures are kept as JPEG bytes: a few hundred KB each rather than the decoded arrays.
    st.session_state["compare_rows"] = [(c.as_dict(), rs.jpeg_bytes(c.picture) if c.picture is not None else None)
                                        for c in found]
    st.session_state["compare_models"] = (f"{clf_a.name} · weights {clf_a.weights_sha256[:12]}",
                                          f"{clf_b.name} · weights {clf_b.weights_sha256[:12]}")


def results(rows: list[tuple[dict[str, Any], bytes | None]]) -> None:
    name_a, name_b = st.session_state.get("compare_models", ("", ""))
    st.subheader(f"Results: {len(rows)} photographs")
    st.text(f"Model A: {name_a}\nModel B: {name_b}")  # checkpoint names are shown as written
    found = [r for r, _ in rows]
    agree = sum(1 for r in found if r["agree"])
    columns = st.columns(3)
    columns[0].metric("Same prediction", f"{agree} of {len(found)}")
    columns[1].metric("Map similarity (mean Spearman)", f"{sum(r['spearman'] for r in found) / len(found):.3f}")
    columns[2].metric("Top 20% overlap (mean)", f"{sum(r['top20_overlap'] for r in found) / len(found):.1%}")
    table = {
        "File": [r["file"] for r in found],
        "Model A": [r["prediction_a"] for r in found],
        "Confidence A": [r["confidence_a"] for r in found],
        "Model B": [r["prediction_b"] for r in found],
        "Confidence B": [r["confidence_b"] for r in found],
        "Agree": [r["agree"] for r in found],
        "Spearman": [r["spearman"] for r in found],
        "Top 20% overlap": [r["top20_overlap"] for r in found],
        "Attention A": [r["verdict_a"] for r in found],
        "Attention B": [r["verdict_b"] for r in found],
    }
    percent = {"min_value": 0.0, "max_value": 1.0, "format": "percent"}
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Confidence A": st.column_config.ProgressColumn("Confidence A", **percent),
        "Confidence B": st.column_config.ProgressColumn("Confidence B", **percent),
        "Spearman": st.column_config.NumberColumn("Spearman", format="%.3f",
                                                  help="Rank correlation of the two maps: 1 means the same order"),
        "Top 20% overlap": st.column_config.NumberColumn("Top 20% overlap", format="percent",
                                                         help="Share of map A's top 20% also in map B's top 20%"),
    })
    for r, picture in rows:
        if picture is None:
            continue
        st.text(r["file"])  # the user's file name, as plain text
        st.image(picture, width="stretch")


st.title("Compare")
state.show_flashes()
clf, problem = state.classifier()
state.model_notice(clf, problem)
st.caption("Model A is this session's model (change it on the Model page). Model B is another checkpoint; "
           "both explain the same photographs with the Review page's method.")

source = st.radio("Model B", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="compare_b_source")
if source == "server":
    checkpoints = state.checkpoints_on_server()
    if checkpoints:
        st.selectbox("Checkpoint", checkpoints, format_func=lambda p: p.name, key="compare_b_file")
    else:
        st.info("No checkpoint in models/weights/ yet.")
else:
    st.file_uploader("Checkpoint (.pt or .pth)", type=["pt", "pth"], key="compare_b_upload",
                     help="Read as weights only, never run as code.")
uploads = st.file_uploader("Photographs", type=UPLOAD_TYPES, accept_multiple_files=True, key="compare_images")
modality = st.selectbox("Modality", [DETECT, *MODALITIES], key="compare_modality",
                        format_func=lambda m: "Tell per photograph" if m == DETECT else MODALITY_NAMES[m])
has_b = st.session_state.get("compare_b_upload" if source == "upload" else "compare_b_file") is not None

if st.button("Compare", type="primary", icon=":material/compare:",
             disabled=clf is None or not uploads or not has_b):
    assert clf is not None
    clf_b = _model_b(source)
    if clf_b is not None:
        try:
            _run(clf, clf_b, list(uploads), None if modality == DETECT else modality)
        except ExplainError as error:
            st.error(str(error))
        st.session_state["compare_b_demo"] = clf_b.is_demo

if st.session_state.get("compare_b_demo"):
    st.warning("Model B is the demonstration model, trained on synthetic images. Not for clinical use.",
               icon=":material/science:")
unreadable = st.session_state.get("compare_unreadable") or []
if unreadable:
    st.warning(f"{len(unreadable)} photograph(s) could not be read and were left out:")
    st.text("\n".join(unreadable))
rows = st.session_state.get("compare_rows")
if rows:
    results(rows)
