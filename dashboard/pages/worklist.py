"""Worklist: every patient with their eyes, the latest model result and the review status; search, filter, open."""

from __future__ import annotations

import streamlit as st

from components.records import WORKLIST_STATUSES, WorklistRow
from dashboard import state

STATUS_LABELS = {"unreviewed": "Unreviewed", "reviewed": "Reviewed, not signed", "signed": "Signed"}
ALL = "all"


def _result(prediction: str | None, confidence: float | None) -> str:
    return "—" if prediction is None or confidence is None else f"{prediction} ({confidence:.0%})"


def _table(rows: list[WorklistRow]) -> dict[str, list[object]]:
    # Columns, not row dicts: st.dataframe shows every cell as plain text, names included.
    return {
        "Patient ID": [r.pseudo_id for r in rows],
        "Name": [r.name or "" for r in rows],
        "Eyes": [r.n_eyes for r in rows],
        "Exams": [r.n_exams for r in rows],
        "Last exam": [r.last_exam_date for r in rows],
        "Right eye (OD)": [_result(r.od_prediction, r.od_confidence) for r in rows],
        "Left eye (OS)": [_result(r.os_prediction, r.os_confidence) for r in rows],
        "Review": [STATUS_LABELS[r.review_status] for r in rows],
    }


def _open() -> None:
    # Read at click time: arguments bound when the button was drawn would be the previous choice.
    st.session_state["current_patient"] = st.session_state["worklist_open"]


st.title("Worklist")
state.show_flashes()
# The model results below come from the loaded model: say when it is the demonstration one.
state.model_notice(*state.classifier())
store = state.store()

search_col, status_col = st.columns([2, 1])
search = search_col.text_input("Search by patient ID", key="worklist_search", persist_state="session",
                               placeholder="e.g. P-0001", max_chars=64)
status = status_col.selectbox("Review status", [ALL, *WORKLIST_STATUSES], key="worklist_status",
                              persist_state="session",
                              format_func=lambda s: "All" if s == ALL else STATUS_LABELS[s])
rows = [r for r in store.worklist(status=None if status == ALL else status)
        if search.strip().lower() in r.pseudo_id.lower()]

counts = dict.fromkeys(WORKLIST_STATUSES, 0)
for row in store.worklist():
    counts[row.review_status] += 1
metric_cols = st.columns(len(WORKLIST_STATUSES))
for column, key in zip(metric_cols, WORKLIST_STATUSES, strict=True):
    column.metric(STATUS_LABELS[key], counts[key])

if not rows:
    st.info("No patient matches." if (search or status != ALL) else
            "No patients yet: create one on the Review page.", icon=":material/person_search:")
else:
    st.dataframe(_table(rows), hide_index=True, width="stretch",
                 column_config={"Last exam": st.column_config.DateColumn("Last exam", format="YYYY-MM-DD")})
    pick_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
    pick_col.selectbox("Open a patient", [r.pseudo_id for r in rows], key="worklist_open")
    if button_col.button("Open in Review", type="primary", icon=":material/visibility:", on_click=_open):
        st.switch_page(state.PAGE_REVIEW)
