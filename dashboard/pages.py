"""The dashboard's pages, each named once: the navigation is built from this list and links use its paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import streamlit as st
from streamlit.navigation.page import StreamlitPage

__all__ = ["AUDIT", "BATCH", "COMPARE", "MODEL", "PACS", "PAGES", "REVIEW", "STATUS", "WORKLIST", "Page",
           "navigation"]


@dataclass(frozen=True)
class Page:
    """One page: its script beside app.py, its title (also its heading) and its icon."""

    path: str
    title: str
    icon: str


# Not pages/: beside the entry script, Streamlit would take that folder for its older multipage
# mechanism; st.navigation names the page files itself.
REVIEW: Final = Page("views/review.py", "Review", ":material/visibility:")
WORKLIST: Final = Page("views/worklist.py", "Worklist", ":material/patient_list:")
BATCH: Final = Page("views/batch.py", "Batch", ":material/photo_library:")
AUDIT: Final = Page("views/audit.py", "Audit", ":material/fact_check:")
COMPARE: Final = Page("views/compare.py", "Compare", ":material/compare:")
PACS: Final = Page("views/pacs.py", "PACS", ":material/cloud_sync:")
MODEL: Final = Page("views/model.py", "Model", ":material/model_training:")
STATUS: Final = Page("views/status.py", "Status", ":material/monitor_heart:")
PAGES: Final = (REVIEW, WORKLIST, BATCH, AUDIT, COMPARE, PACS, MODEL, STATUS)
"""Every page, in the order the sidebar lists them; the first is the landing page."""


def navigation() -> StreamlitPage:
    """The sidebar's navigation over :data:`PAGES`; the page this run shows (call ``.run()`` on it)."""
    return st.navigation([st.Page(p.path, title=p.title, icon=p.icon, default=p is REVIEW) for p in PAGES])
