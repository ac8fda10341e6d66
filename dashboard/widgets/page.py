"""Every page's head: its title, the messages queued for it, and the banner about the model in use."""

from __future__ import annotations

import streamlit as st

from components.screening.vocabulary import DEMO_WARNING
from dashboard import pages, session
from models import Classifier

__all__ = ["model_notice", "open_page"]


def model_notice(clf: Classifier | None, problem: str | None) -> None:
    """The banner every page shows: a missing model, or the demo model's warning."""
    if clf is None:
        st.error(problem or "No model is loaded.")
        st.page_link(pages.MODEL.path, label="Go to the Model page", icon=":material/model_training:")
    elif clf.is_demo:
        st.warning(f"{DEMO_WARNING} Its results only show how the software works.", icon=":material/science:")


def open_page(title: str) -> Classifier | None:
    """Every page's head: its title, the queued messages, the model banner; returns this session's model."""
    st.title(title)
    session.show_flashes()
    clf, problem = session.classifier()
    model_notice(clf, problem)
    return clf
