"""Model: the loaded model's card and plots, and loading another checkpoint from the server or an upload."""

from __future__ import annotations

import streamlit as st

from dashboard import session
from dashboard.widgets.model_card import load_checkpoint_ui, model_card_ui
from dashboard.widgets.page import open_page

clf = open_page("Model")
if clf is not None:
    model_card_ui(clf)
st.divider()
if session.person().may("manage_models"):
    load_checkpoint_ui()
else:
    st.caption("Loading or switching the model is for administrators.")
