"""Patients on the Review page: creating one, adding a photograph to a record, keeping a quick look."""

from __future__ import annotations

from datetime import date

import streamlit as st

from components.base.errors import CataractCamError
from components.imaging.loading import ImageError, sha256_bytes
from components.records import RecordStore
from components.screening.vocabulary import EYE_LABELS, EYES, MODALITIES, MODALITY_LABELS, SEX_LABELS, SEXES
from components.workflows import review as rs
from dashboard import resources, session
from dashboard.folders import UPLOAD_TYPES
from dashboard.keys import widget_key
from dashboard.present import md_id, sentence


def _on_create_patient(store: RecordStore) -> None:
    values = {key: st.session_state.get(f"new_patient_{key}") for key in ("id", "name", "birth", "sex")}
    pseudo_id = (values["id"] or "").strip()
    try:
        store.create_patient(pseudo_id, name=(values["name"] or "").strip() or None,
                             birth_date=values["birth"], sex=values["sex"], actor=session.actor())
    except CataractCamError as error:
        st.session_state["new_patient_error"] = sentence(error)
        return
    st.session_state.pop("new_patient_error", None)
    for key in ("id", "name"):
        st.session_state[f"new_patient_{key}"] = ""
    st.session_state["new_patient_birth"] = None
    st.session_state["new_patient_sex"] = None
    st.session_state["current_patient"] = pseudo_id
    session.flash(f"Patient {md_id(pseudo_id)} created.")


def new_patient_ui(store: RecordStore) -> None:
    """The New patient form; a created patient becomes the current one."""
    with st.expander("New patient", icon=":material/person_add:"):
        with st.form("new_patient", border=False):
            st.text_input("Pseudonymous ID (required)", key="new_patient_id", max_chars=64,
                          help="Letters, digits, '-', '_' or '.'; never a name.")
            st.text_input("Name (optional)", key="new_patient_name", max_chars=200)
            st.date_input("Birth date (optional)", key="new_patient_birth", value=None,
                          min_value=date(1900, 1, 1), max_value=date.today())
            st.selectbox("Sex (optional)", SEXES, key="new_patient_sex", index=None,
                         format_func=lambda s: SEX_LABELS[s], placeholder="Not recorded")
            st.form_submit_button("Create patient", on_click=_on_create_patient, args=(store,))
        problem = st.session_state.get("new_patient_error")
        if problem:
            st.error(problem)


def add_photo_ui(store: RecordStore, pseudo_id: str) -> None:
    """Upload a photograph, say which eye, when and what kind, and add it to the patient's record."""
    round_ = st.session_state.setdefault("add_upload_round", 0)
    upload = st.file_uploader(f"Add a photograph to patient {md_id(pseudo_id)}", type=UPLOAD_TYPES,
                              key=widget_key("add_upload", round=round_),
                              help="JPEG, PNG, TIFF, BMP, WebP, GIF or DICOM, up to 50 MB.")
    if upload is None:
        return
    held = rs.HeldUpload(upload.getvalue())
    sha = sha256_bytes(held.data)
    try:
        image = session.upload_image(sha, held, upload.name)
    except ImageError as error:
        st.error(f"This file cannot be added. {error}", icon=":material/broken_image:")
        return
    eye_col, date_col, modality_col, button_col = st.columns([1.3, 1, 1.2, 1], vertical_alignment="bottom")
    eye = eye_col.radio("Eye", EYES, format_func=EYE_LABELS.get, horizontal=True,
                        index=None if image.laterality is None else EYES.index(image.laterality),
                        key=widget_key("add_eye", photo=sha[:16]))
    exam_date = date_col.date_input("Exam date", value=date.today(), max_value=date.today(),
                                    key=widget_key("add_date", photo=sha[:16]))
    guessed = rs.guess_modality(image.display) or "external"
    modality = modality_col.selectbox("Modality", MODALITIES, format_func=lambda m: MODALITY_LABELS[m],
                                      index=MODALITIES.index(guessed), key=widget_key("add_modality", photo=sha[:16]))
    if not button_col.button("Add to record", key="add_photo", type="primary", icon=":material/add_photo_alternate:"):
        return
    if eye is None:
        st.error("Choose which eye the photograph shows.")
        return
    try:
        with st.spinner("Saving the photograph…"):
            rs.save_photo(store, resources.image_cache(), pseudo_id, image, eye=eye, exam_date=exam_date,
                          modality=modality, actor=session.actor())
    except CataractCamError as error:
        st.error(sentence(error))
        return
    st.session_state["add_upload_round"] = round_ + 1
    session.flash(f"{EYE_LABELS[eye]} photograph added.")
    st.rerun()


def _on_save_quick_case(store: RecordStore) -> None:
    case = st.session_state.get("quick_case")
    pseudo_id = st.session_state.get("save_quick_to")
    if not case or not pseudo_id or case.get("eye") is None:
        st.session_state["save_quick_error"] = "Choose the eye and the patient first."
        return
    try:
        image = session.upload_image(case["sha256"], case["upload"], case["hint"])
    except ImageError as error:
        st.session_state["save_quick_error"] = sentence(error)
        return
    try:
        exam = rs.save_photo(store, resources.image_cache(), pseudo_id, image, eye=case["eye"],
                             exam_date=st.session_state.get("save_quick_date") or date.today(),
                             modality=case["modality"], actor=session.actor())
    except CataractCamError as error:
        st.session_state["save_quick_error"] = sentence(error)
        return
    st.session_state.pop("save_quick_error", None)
    st.session_state["current_patient"] = pseudo_id
    session.flash(f"{EYE_LABELS[exam.eye]} photograph saved to patient {md_id(pseudo_id)}.")


def save_quick_case_ui(store: RecordStore) -> None:
    """Keep the quick look's photograph in a patient's record, to review and sign it there."""
    patients = [p.pseudo_id for p in store.list_patients()]
    with st.expander("Not saved. Keep this photograph in a patient's record to review and sign it",
                     icon=":material/save:"):
        if not patients:
            st.caption("Create the patient first (New patient, above right).")
            return
        to_col, date_col, button_col = st.columns([2, 1.2, 1], vertical_alignment="bottom")
        to_col.selectbox("Patient", patients, key="save_quick_to")
        date_col.date_input("Exam date", value=date.today(), max_value=date.today(), key="save_quick_date")
        button_col.button("Save to record", key="save_quick", icon=":material/save:", on_click=_on_save_quick_case,
                          args=(store,))
        problem = st.session_state.get("save_quick_error")
        if problem:
            st.error(problem)
