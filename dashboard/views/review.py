"""Review (the landing page): a photograph or a patient's eyes, the model's result and evidence, the signed review."""

from __future__ import annotations

import streamlit as st

from components.report import PatientInfo
from components.workflows import review as rs
from dashboard import resources, session
from dashboard.widgets.cases import export_ui, patient_case_ui, quick_case_ui, quick_uploader_ui
from dashboard.widgets.clinic import clinic_ui
from dashboard.widgets.page import open_page
from dashboard.widgets.patients import add_photo_ui, new_patient_ui

QUICK = ""  # the patient choice that means "one photograph, not saved"

clf = open_page("Review")
store = resources.store()
may_review = session.person().may("review")  # viewers read; creating and adding is a clinician's

patient_ids = [p.pseudo_id for p in store.list_patients()]
if st.session_state["current_patient"] not in patient_ids:
    st.session_state["current_patient"] = QUICK

upload_col, patient_col = st.columns([3, 2], gap="large")
with patient_col:
    st.selectbox("Patient", [QUICK, *patient_ids], key="current_patient", persist_state="session",
                 format_func=lambda p: "Quick look: one photograph, not saved" if p == QUICK else p)
    if may_review:
        new_patient_ui(store)
current = st.session_state["current_patient"]
with upload_col:
    if current == QUICK:
        quick_uploader_ui()
    elif may_review:
        add_photo_ui(store, current)

if clf is None:
    st.info("Results and maps appear here once a model is loaded.", icon=":material/info:")

patient: PatientInfo | None = None
if current == QUICK:
    eyes = quick_case_ui(store, clf)
    case = st.session_state.get("quick_case")
    if case:
        patient = PatientInfo(pseudo_id=rs.anonymous_id(case["sha256"]))
else:
    patient, eyes = patient_case_ui(store, clf, current)

if clf is not None and patient is not None and eyes:
    export_ui(store, clf, patient, eyes, saved=current != QUICK)
    if current != QUICK:
        clinic_ui(store, clf, patient, eyes)
