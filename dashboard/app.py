"""The clinician dashboard's entry point: the sign-in gate, page navigation and the resources every page shares."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ first on the path, not the checkout; a
# deployment that installed only requirements.txt still needs to import the project.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from components.base.heap import release_large_buffers  # noqa: E402
from components.screening.decision import FINAL_DECISION  # noqa: E402
from dashboard import state  # noqa: E402
from dashboard.present import model_title, plain  # noqa: E402
from dashboard.widgets.identity import identity_sidebar_ui, no_role_ui, refuse_ui, sign_in_ui  # noqa: E402

# Every run, because this script is the only code the server is sure to run first; it is idempotent.
release_large_buffers()
st.set_page_config(page_title="Cataract CAM", page_icon=":material/visibility:", layout="wide")
state.keep_settings()

# Nothing below this gate runs for a visitor who may not see patient data.
refusal = state.bind_refusal()
if refusal is not None:
    refuse_ui(refusal)
if state.auth_configured() and not state.signed_in():
    sign_in_ui()
person = state.person()
if not person.may("read"):
    no_role_ui(person)

navigation = st.navigation(
    [
        st.Page(state.PAGE_REVIEW, title="Review", icon=":material/visibility:", default=True),
        st.Page(state.PAGE_WORKLIST, title="Worklist", icon=":material/patient_list:"),
        st.Page(state.PAGE_BATCH, title="Batch", icon=":material/photo_library:"),
        st.Page(state.PAGE_AUDIT, title="Audit", icon=":material/fact_check:"),
        st.Page(state.PAGE_COMPARE, title="Compare", icon=":material/compare:"),
        st.Page("views/pacs.py", title="PACS", icon=":material/cloud_sync:"),
        st.Page(state.PAGE_MODEL, title="Model", icon=":material/model_training:"),
    ]
)

with st.sidebar:
    identity_sidebar_ui(person)
    clf, _problem = state.classifier()
    # The model's name comes from its checkpoint: shown as written, never as Markdown (a link or an image).
    st.caption(f"Model: {plain(model_title(clf))}" if clf is not None else "Model: none loaded")
    st.caption(f"Decision support, not a diagnosis. {FINAL_DECISION}")

navigation.run()
