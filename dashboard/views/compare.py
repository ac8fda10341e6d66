"""Compare: this session's model and another checkpoint on the same photographs, as `cataract-cam compare` does."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from components.explanation.cam import ExplainError
from components.screening.vocabulary import DEMO_WARNING
from components.workflows import runs
from dashboard import folders, resources, session
from dashboard.present import plain
from dashboard.widgets.inputs import modality_ui
from dashboard.widgets.page import open_page
from dashboard.widgets.results import compare_results_ui
from models import CheckpointError

SOURCES = {"server": "A checkpoint on the server (models/weights/)", "upload": "Upload a checkpoint"}

clf = open_page("Compare")
st.caption("Model A is this session's model (change it on the Model page). Model B is another checkpoint; "
           "both explain the same photographs with the Review page's method.")

source = st.radio("Model B", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="compare_b_source")
if source == "server":
    checkpoints = resources.checkpoints_on_server()
    if checkpoints:
        st.selectbox("Checkpoint", checkpoints, format_func=lambda p: p.name, key="compare_b_file")
    else:
        st.info("No checkpoint in models/weights/ yet.")
else:
    st.file_uploader("Checkpoint (.pt or .pth)", type=["pt", "pth"], key="compare_b_upload",
                     help="Read as weights only, never run as code.")
uploads = st.file_uploader("Photographs", type=folders.UPLOAD_TYPES, accept_multiple_files=True,
                           key="compare_images")
modality = modality_ui("compare_modality")
model_b = st.session_state.get("compare_b_upload" if source == "upload" else "compare_b_file")
too_many = folders.too_many_uploads(len(uploads or []))
if too_many:
    st.error(too_many)

if st.button("Compare", key="compare_run", type="primary", icon=":material/compare:",
             disabled=clf is None or not uploads or model_b is None or too_many is not None):
    assert clf is not None
    assert model_b is not None
    try:
        # Validated by the loader: weights only, never code.
        clf_b = (resources.load_checkpoint_bytes(model_b.getvalue()) if source == "upload"
                 else resources.load_checkpoint_file(Path(model_b)))
        with st.spinner(f"Explaining {len(uploads)} photographs with both models…"):
            st.session_state["compare_result"] = runs.compare_run(
                clf, clf_b, uploads, modality, session.look())
        st.session_state["compare_b_demo"] = clf_b.is_demo
    except CheckpointError as error:
        st.error(f"Model B cannot be used. {plain(str(error))}")
    except ExplainError as error:
        st.error(plain(str(error)))

if st.session_state.get("compare_b_demo"):
    st.warning(f"Model B: {DEMO_WARNING}", icon=":material/science:")
result = st.session_state.get("compare_result")
if result is not None and result.unreadable:
    st.warning(f"{len(result.unreadable)} photograph(s) could not be read and were left out:")
    st.text("\n".join(result.unreadable))
if result is not None and result.rows:
    compare_results_ui(result)
