"""The Model page's pieces: the loaded model's card and plots, and loading another checkpoint."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from dashboard import resources, session
from dashboard.present import CARD_TEXT_FIELDS, card_overview, card_plots, card_text, metric_rows, plain
from models import CheckpointError, Classifier


def model_card_ui(clf: Classifier) -> None:
    """Name, overview, weights digest, metrics with intervals, the card's texts and plots."""
    st.subheader(plain(clf.name))  # the checkpoint's own text, never Markdown
    if clf.is_demo:
        st.caption("Shipped demonstration model")
    overview = card_overview(clf)
    st.dataframe({"": list(overview), "Model": list(overview.values())}, hide_index=True, width="stretch")
    st.markdown("**Weights SHA-256**")
    st.code(clf.weights_sha256, language=None)
    metrics = clf.card.get("metrics")
    if isinstance(metrics, Mapping) and metrics:
        st.markdown("**Metrics**")
        st.dataframe(metric_rows(metrics), hide_index=True, width="stretch")
    else:
        st.caption("The model card reports no metrics.")
    for key, label in CARD_TEXT_FIELDS:
        if clf.card.get(key):
            st.markdown(f"**{label}**")
            st.text(card_text(clf.card[key]))  # card text is shown as written, never as markup
    plots = card_plots(clf)
    if plots:
        st.markdown("**Plots**")
        columns = st.columns(min(3, len(plots)))
        for i, plot in enumerate(plots):
            columns[i % len(columns)].image(str(plot), caption=plain(plot.stem), width="stretch")


def _use(choice: session.ModelChoice, clf: Classifier) -> None:
    st.session_state["model_choice"] = choice
    session.flash(f"Model loaded: weights {clf.weights_sha256[:12]}.")
    st.rerun()


def _server_ui() -> None:
    files = resources.checkpoints_on_server()
    if not files:
        st.info("No checkpoint in models/weights/ yet.")
        return
    path = st.selectbox("Checkpoint on the server (models/weights/)", files, format_func=lambda p: p.name,
                        key="model_file")
    if st.button("Load this checkpoint", key="model_load_file", icon=":material/upload_file:"):
        try:
            clf = resources.load_checkpoint_file(path)
        except CheckpointError as error:
            st.error(f"This checkpoint cannot be used. {plain(str(error))}")
        else:
            _use(session.ModelChoice("file", path=str(path), label=path.name), clf)


def _upload_ui() -> None:
    upload = st.file_uploader("Upload a checkpoint (.pt or .pth)", type=["pt", "pth"], key="model_upload")
    if upload is None or not st.button("Load the uploaded checkpoint", key="model_load_upload",
                                       icon=":material/upload:"):
        return
    data = upload.getvalue()
    try:
        clf = resources.load_checkpoint_bytes(data)
    except CheckpointError as error:
        st.error(f"This checkpoint cannot be used. {plain(str(error))}")
    else:
        st.session_state["_model_upload"] = data
        _use(session.ModelChoice("upload", sha256=clf.weights_sha256, label="uploaded"), clf)


def load_checkpoint_ui() -> None:
    """Another checkpoint for this browser session, from the server or an upload, or back to the default."""
    st.subheader("Load another checkpoint")
    st.caption("Checkpoints are read as weights only (never run as code) and must be an "
               "EfficientNet-B0 with its head. The choice lasts for this browser session.")
    server_col, upload_col = st.columns(2, gap="large")
    with server_col:
        _server_ui()
    with upload_col:
        _upload_ui()
    chosen = isinstance(st.session_state.get("model_choice"), session.ModelChoice)
    if chosen and st.button("Back to the default model", key="model_default", icon=":material/undo:"):
        st.session_state.pop("model_choice", None)
        st.session_state.pop("_model_upload", None)
        st.rerun()
