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

from components.base import oplog  # noqa: E402
from components.base.heap import release_large_buffers  # noqa: E402
from components.screening.decision import FINAL_DECISION  # noqa: E402
from components.workflows.runs import model_title  # noqa: E402
from dashboard import pages, resources, session  # noqa: E402
from dashboard.present import plain  # noqa: E402
from dashboard.widgets.identity import identity_sidebar_ui, no_role_ui, refuse_ui, sign_in_ui  # noqa: E402

# Every run, because this script is the only code the server is sure to run first; it is idempotent.
release_large_buffers()
oplog.configure()  # JSON lines on stderr for the operator: sign-in, records' events, errors
st.set_page_config(page_title="Cataract CAM", page_icon=":material/visibility:", layout="wide")
session.keep_settings()

# Nothing below this gate runs for a visitor who may not see patient data.
refusal = session.bind_refusal()
if refusal is not None:
    refuse_ui(refusal)
if resources.auth_configured():
    if not session.signed_in():
        sign_in_ui()
    ended = session.sign_in_ended()  # signed out (a copied cookie), idle too long, or signed in too long ago
    if ended is not None:
        sign_in_ui(ended)
    session.resume_signature()  # back from signing in again to sign: open that patient
person = session.person()
if not person.may("read"):
    no_role_ui(person)

navigation = pages.navigation()

with st.sidebar:
    identity_sidebar_ui(person)
    clf, _problem = session.classifier()
    # The model's name comes from its checkpoint: shown as written, never as Markdown (a link or an image).
    st.caption(f"Model: {plain(model_title(clf))}" if clf is not None else "Model: none loaded")
    st.caption(f"Decision support, not a diagnosis. {FINAL_DECISION}")

try:
    navigation.run()
except Exception as problem:  # st.stop and st.rerun are not Exceptions: they pass through
    oplog.error("page_failed", problem, issuer=person.issuer, subject=person.subject, source=navigation.url_path
                or "review")
    raise
