"""Worklist: every patient with their eyes, the latest model result and the review status; search, filter, open."""

from __future__ import annotations

import streamlit as st

from components.screening.vocabulary import REVIEW_STATUS_LABELS, WORKLIST_STATUSES
from dashboard import pages, resources
from dashboard.present import worklist_table
from dashboard.widgets.page import open_page

ALL = "all"


def _open() -> None:
    # Read at click time: arguments bound when the button was drawn would be the previous choice.
    st.session_state["current_patient"] = st.session_state["worklist_open"]


# The model results below come from the loaded model: the banner says when it is the demonstration one.
open_page("Worklist")
store = resources.store()

search_col, status_col = st.columns([2, 1])
search = search_col.text_input("Search by patient ID", key="worklist_search", persist_state="session",
                               placeholder="e.g. P-0001", max_chars=64)
status = status_col.selectbox("Review status", [ALL, *WORKLIST_STATUSES], key="worklist_status",
                              persist_state="session",
                              format_func=lambda s: "All" if s == ALL else REVIEW_STATUS_LABELS[s])
rows = [r for r in store.worklist(status=None if status == ALL else status)
        if search.strip().lower() in r.pseudo_id.lower()]

counts = dict.fromkeys(WORKLIST_STATUSES, 0)
for row in store.worklist():
    counts[row.review_status] += 1
for column, key in zip(st.columns(len(WORKLIST_STATUSES)), WORKLIST_STATUSES, strict=True):
    column.metric(REVIEW_STATUS_LABELS[key], counts[key])

if not rows:
    st.info("No patient matches." if (search or status != ALL) else
            "No patients yet: create one on the Review page.", icon=":material/person_search:")
    st.stop()
st.dataframe(worklist_table(rows), hide_index=True, width="stretch",
             column_config={"Last exam": st.column_config.DateColumn("Last exam", format="YYYY-MM-DD")})
pick_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
pick_col.selectbox("Open a patient", [r.pseudo_id for r in rows], key="worklist_open")
if button_col.button("Open in Review", key="worklist_open_button", type="primary", icon=":material/visibility:",
                     on_click=_open):
    st.switch_page(pages.REVIEW.path)
