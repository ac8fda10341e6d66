"""Status: whether every configured part is ready, as `cataract-cam check` says it (administrators only)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from components.interop.readiness import check_parts
from dashboard import session
from dashboard.widgets.page import open_page

open_page("Status")
if not session.person().may("operate"):
    st.info("The Status page is for administrators.")
    st.stop()

st.caption("Each configured part, checked as `cataract-cam check` checks it: the database and its schema, "
           "the model and its card, the image store, the anchor, the PACS and the sign-in provider.")
if st.button("Check again", key="status_check", icon=":material/refresh:") or "status_parts" not in st.session_state:
    with st.spinner("Checking each part..."):
        st.session_state["status_parts"] = (check_parts(), datetime.now(UTC))
found, checked_at = st.session_state["status_parts"]
failed = [part.part for part in found if not part.ok]
if failed:
    # A warning, not an error: the page works; it reports on the set-up.
    st.warning(f"Not ready: {', '.join(failed)}.", icon=":material/error:")
else:
    st.success("Every configured part is ready.", icon=":material/check_circle:")
st.dataframe(
    [{"Part": part.part, "Status": {"ok": "ready", "-": "not configured"}.get(part.status, "FAILED"),
      "What was found": part.detail} for part in found],
    hide_index=True, width="stretch",
)
st.caption(f"Checked {checked_at:%Y-%m-%d %H:%M:%S} UTC.")
