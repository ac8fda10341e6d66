"""Model: the loaded model's card and plots, and loading another checkpoint from the server or an upload."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import state
from models import CheckpointError, Classifier

CARD_TEXT_FIELDS = (
    ("intended_use", "Intended use"),
    ("training_data", "Training data"),
    ("limitations", "Known limits"),
    ("architecture", "Architecture"),
    ("training_time", "Training time"),
)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(f"- {v}" for v in value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _metric_rows(metrics: Mapping[str, Any]) -> dict[str, list[str]]:
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
            continue  # a confusion matrix or a curve is not one number
        names.append(str(name))
        values.append(str(point))
        intervals.append(interval)
    return {"Metric": names, "Value": values, "95% interval": intervals}


def _plots(clf: Classifier) -> list[Path]:
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


def model_card(clf: Classifier) -> None:
    st.subheader(clf.name)
    if clf.is_demo:
        st.caption("Shipped demonstration model")
    overview = {
        "Classes": ", ".join(clf.class_names),
        "Input size": f"{clf.input_size} × {clf.input_size} px",
        "Operating threshold": f"{clf.threshold:.3f} on P({clf.class_names[clf.positive_index]})"
        if clf.positive_index is not None else f"{clf.threshold:.3f}",
        "Grad-CAM layer": clf.target_layer,
        "Version": str(clf.card.get("version", "unversioned")),
    }
    st.dataframe({"": list(overview), "Model": list(overview.values())}, hide_index=True, width="stretch")
    st.markdown("**Weights SHA-256**")
    st.code(clf.weights_sha256, language=None)
    metrics = clf.card.get("metrics")
    if isinstance(metrics, Mapping) and metrics:
        st.markdown("**Metrics**")
        st.dataframe(_metric_rows(metrics), hide_index=True, width="stretch")
    else:
        st.caption("The model card reports no metrics.")
    for key, label in CARD_TEXT_FIELDS:
        if clf.card.get(key):
            st.markdown(f"**{label}**")
            st.text(_plain(clf.card[key]))  # card text is shown as written, never as markup
    plots = _plots(clf)
    if plots:
        st.markdown("**Plots**")
        columns = st.columns(min(3, len(plots)))
        for i, plot in enumerate(plots):
            columns[i % len(columns)].image(str(plot), caption=plot.stem, width="stretch")


def _use(choice: state.ModelChoice, clf: Classifier) -> None:
    st.session_state["model_choice"] = choice
    state.flash(f"Model loaded: weights {clf.weights_sha256[:12]}.")
    st.rerun()


def load_section() -> None:
    st.subheader("Load another checkpoint")
    st.caption("Checkpoints are read as weights only (never run as code) and must be an "
               "EfficientNet-B0 with its head. The choice lasts for this browser session.")
    server_col, upload_col = st.columns(2, gap="large")
    with server_col:
        files = state.checkpoints_on_server()
        if files:
            path = st.selectbox("Checkpoint on the server (models/weights/)", files,
                                format_func=lambda p: p.name, key="model_file")
            if st.button("Load this checkpoint", icon=":material/upload_file:"):
                try:
                    clf = state.load_checkpoint_file(path)
                except CheckpointError as error:
                    st.error(f"This checkpoint cannot be used. {error}")
                else:
                    _use(state.ModelChoice("file", path=str(path), label=path.name), clf)
        else:
            st.info("No checkpoint in models/weights/ yet.")
    with upload_col:
        upload = st.file_uploader("Upload a checkpoint (.pt or .pth)", type=["pt", "pth"], key="model_upload")
        if upload is not None and st.button("Load the uploaded checkpoint", icon=":material/upload:"):
            data = upload.getvalue()
            try:
                clf = state.load_checkpoint_bytes(data)
            except CheckpointError as error:
                st.error(f"This checkpoint cannot be used. {error}")
            else:
                st.session_state["_model_upload"] = data
                _use(state.ModelChoice("upload", sha256=clf.weights_sha256, label="uploaded"), clf)
    if isinstance(st.session_state.get("model_choice"), state.ModelChoice):
        if st.button("Back to the default model", icon=":material/undo:"):
            st.session_state.pop("model_choice", None)
            st.session_state.pop("_model_upload", None)
            st.rerun()


st.title("Model")
state.show_flashes()
clf, problem = state.classifier()
state.model_notice(clf, problem)
if clf is not None:
    model_card(clf)
st.divider()
load_section()
