"""PACS: search studies of eye photographs (QIDO-RS) and pull one into a patient's record (WADO-RS)."""

from __future__ import annotations

import streamlit as st

from components.base.errors import CataractCamError
from components.interop.case import pull_into_record
from components.interop.dicomweb import SEARCH_MODALITIES, PacsClient, PacsError
from dashboard import resources, session
from dashboard.present import sentence
from dashboard.widgets.clinic import pacs_config
from dashboard.widgets.page import open_page

open_page("PACS")
store = resources.store()
config = pacs_config()
if config is None:
    st.info("No PACS configured: set CATARACT_CAM_DICOMWEB_URL (and its user and password or token) in the "
            "environment or the app's secrets.", icon=":material/cloud_off:")
    st.stop()
client = PacsClient(config)

with st.form("pacs_search"):
    id_col, date_col, mod_col = st.columns([1.2, 1.2, 1.6])
    patient_id = id_col.text_input("Patient ID", max_chars=64)
    study_date = date_col.text_input("Study date", max_chars=17, placeholder="YYYYMMDD or YYYYMMDD-YYYYMMDD")
    modalities = mod_col.multiselect("Modalities", SEARCH_MODALITIES, default=list(SEARCH_MODALITIES))
    searched = st.form_submit_button("Search", icon=":material/search:")
if searched:
    try:
        st.session_state["pacs_studies"] = client.search_studies(
            patient_id=patient_id.strip() or None, study_date=study_date.strip() or None,
            modalities=modalities or SEARCH_MODALITIES)
    except PacsError as error:
        st.error(str(error), icon=":material/cloud_off:")
studies = st.session_state.get("pacs_studies", [])
if not studies:
    st.caption("Search the PACS for a patient's studies of eye photographs.")
    st.stop()

st.dataframe({"Study date": [s.study_date for s in studies], "Patient ID": [s.patient_id for s in studies],
              "Modalities": [", ".join(s.modalities) for s in studies],
              "Description": [s.description for s in studies]}, hide_index=True, width="stretch")
study_col, patient_col = st.columns(2)
study = study_col.selectbox("Study", studies, format_func=lambda s: f"{s.study_date} · {', '.join(s.modalities)}",
                            key="pacs_study")
patients = [p.pseudo_id for p in store.list_patients()]
target = patient_col.selectbox("Into the record of", patients, index=None, key="pacs_patient",
                               placeholder="Choose a patient")
if st.button("Pull into the patient's record", key="pacs_pull", icon=":material/cloud_download:",
             disabled=target is None):
    try:
        outcome = pull_into_record(store, resources.ledger(), client, study.study_uid, str(target),
                                   actor=session.actor())
    except CataractCamError as error:
        st.error(sentence(error), icon=":material/cloud_off:")
    else:
        for reason in outcome.skipped:
            st.warning(reason)
        if outcome.exams:
            st.session_state["current_patient"] = target
            st.success(f"{len(outcome.exams)} photograph(s) added to the record; open the Review page to "
                       "explain and sign them.", icon=":material/cloud_done:")
