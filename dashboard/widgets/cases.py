"""The Review page's two kinds of case (a quick look at one photograph, a patient's eyes) and the report export."""

from __future__ import annotations

import functools
from datetime import date

import streamlit as st

from components.base.errors import CataractCamError
from components.explanation.cam import Explanation
from components.imaging.loading import ImageError, sha256_bytes
from components.lens.attention import AttentionResult
from components.records import ExamRecord, RecordStore, ReviewRecord
from components.report import PatientInfo, safe_filename
from components.screening.vocabulary import EYE_LABELS, EYES, MODALITIES, MODALITY_LABELS
from components.workflows import review as rs
from components.workflows.patient_export import export_patient_zip
from dashboard import resources, session
from dashboard.folders import UPLOAD_TYPES
from dashboard.keys import EyeScope, widget_key
from dashboard.present import exam_label, md_id, patient_details, sentence
from dashboard.widgets.eye import eye_ui, settings_ui
from dashboard.widgets.patients import save_quick_case_ui
from dashboard.widgets.signing import review_panel_ui
from models import Classifier


def _on_quick_upload() -> None:
    upload = st.session_state.get("quick_upload")
    if upload is None:
        st.session_state.pop("quick_case", None)
        return
    data = upload.getvalue()
    # Only the bytes and what the file name says about the eye are kept, not the name itself.
    # The session holds the bytes; the shared image cache only refers to them.
    st.session_state["quick_case"] = {"upload": rs.HeldUpload(data), "sha256": sha256_bytes(data),
                                      "hint": upload.name, "eye": None, "modality": None}


def quick_uploader_ui() -> None:
    """The drop zone for one photograph, looked at and not saved."""
    st.file_uploader("Eye photograph: drop one for a quick look (not saved)", type=UPLOAD_TYPES,
                     key="quick_upload", on_change=_on_quick_upload,
                     help="JPEG, PNG, TIFF, BMP, WebP, GIF or DICOM, up to 50 MB.")


def _report_input(clf: Classifier, image: rs.ReviewImage, explanation: Explanation,
                  attention: AttentionResult | None, *, eye: str, exam: ExamRecord | None = None,
                  modality: str | None = None, exam_date: date | None = None,
                  review: ReviewRecord | None = None) -> rs.EyeReport:
    # The panels' look is read now, as the screen shows it; the full photograph only when asked.
    return functools.partial(rs.eye_findings, eye=eye, image=image, explanation=explanation, exam=exam,
                             modality=modality, exam_date=exam_date, review=review,
                             colormap=st.session_state["colormap"], alpha=float(st.session_state["alpha"]),
                             attention=attention,
                             typicality=rs.typicality_for(resources.typicality_cache(), clf, image,
                                                          explanation).report_fields())


def quick_case_ui(store: RecordStore, clf: Classifier | None) -> list[rs.EyeReport]:
    """The map settings, the dropped photograph and its eye and modality; its report input once the eye is known."""
    if clf is not None:
        settings_ui(clf)
    case = st.session_state.get("quick_case")
    if not case:
        st.info("Drop an eye photograph above to see the model's result and its Grad-CAM evidence, "
                "or choose a patient to review and sign.", icon=":material/photo_camera:")
        return []
    try:
        image = session.upload_image(case["sha256"], case["upload"], case["hint"])
    except ImageError as error:
        st.error(f"This file cannot be shown. {error}", icon=":material/broken_image:")
        return []
    if case["eye"] is None and image.laterality is not None:
        case["eye"] = image.laterality
    if case["modality"] is None:
        case["modality"] = rs.guess_modality(image.display) or "external"
    scope = EyeScope(case["sha256"])
    with st.container(border=True):
        title, eye_col, modality_col = st.columns([2, 1.2, 1.2], vertical_alignment="bottom")
        title.subheader("Unsaved case")
        case["eye"] = eye_col.radio("Eye", EYES, format_func=EYE_LABELS.get, horizontal=True,
                                    index=None if case["eye"] is None else EYES.index(case["eye"]),
                                    key=scope.key("quick_eye"),
                                    help="Read from the file when it says; needed for the report.")
        case["modality"] = modality_col.selectbox("Modality", MODALITIES, format_func=lambda m: MODALITY_LABELS[m],
                                                  index=MODALITIES.index(case["modality"]),
                                                  key=scope.key("quick_modality"))
        explanation, attention = eye_ui(store, clf, image, None, case["modality"], case["eye"], scope)
        if session.person().may("review"):
            save_quick_case_ui(store)
    if clf is None or explanation is None or case["eye"] is None:
        if explanation is not None:
            st.caption("Choose the eye to export a report.")
        return []
    return [_report_input(clf, image, explanation, attention, eye=case["eye"], modality=case["modality"],
                          exam_date=date.today())]


def _eye_ui(store: RecordStore, clf: Classifier | None, pseudo_id: str, eye: str,
            own: list[ExamRecord]) -> rs.EyeReport | None:
    head, pick = st.columns([2, 2], vertical_alignment="bottom")
    head.subheader(EYE_LABELS[eye])
    exam = own[-1]
    if len(own) > 1:
        exam = pick.selectbox("Exam", own, index=len(own) - 1, format_func=exam_label,
                              key=widget_key("exam", patient=pseudo_id, eye=eye))
    else:
        pick.caption(exam_label(exam))
    try:
        image = session.cached_image(exam.image_sha256, lambda: rs.image_from_pixels(
            exam.image_sha256, store.get_image(exam.image_sha256),
            functools.partial(store.get_image, exam.image_sha256)))
    except CataractCamError as error:
        st.error(sentence(error))
        return None
    scope = EyeScope(exam.image_sha256, exam_id=exam.id, eye=eye)
    explanation, attention = eye_ui(store, clf, image, exam, exam.modality, eye, scope)
    latest = review_panel_ui(store, exam, scope)
    if clf is None or explanation is None:
        return None
    return _report_input(clf, image, explanation, attention, eye=eye, exam=exam, review=latest)


def patient_case_ui(store: RecordStore, clf: Classifier | None,
                    pseudo_id: str) -> tuple[PatientInfo, list[rs.EyeReport]]:
    """The patient's details, then each eye's latest (or chosen) exam with its review; their report inputs."""
    patient = session.open_patient(store, pseudo_id)
    st.subheader(f"Patient {md_id(patient.pseudo_id)}")
    details = patient_details(patient)
    if details:
        st.text(details)  # plain text: a name is never Markdown or HTML
    if clf is not None:
        settings_ui(clf)
    exams = store.exams(pseudo_id)
    if not exams:
        st.info("No photographs yet: add one above.", icon=":material/photo_camera:")
    reports: list[rs.EyeReport] = []
    for eye in EYES:
        own = [e for e in exams if e.eye == eye]
        if not own:
            continue
        with st.container(border=True):
            report = _eye_ui(store, clf, pseudo_id, eye, own)
        if report is not None:
            reports.append(report)
    return rs.patient_info(patient), reports


def export_ui(store: RecordStore, clf: Classifier, patient: PatientInfo, eyes: list[rs.EyeReport],
              saved: bool) -> None:
    """The Export PDF report button; the PDF is built only when pressed, so moving a slider never builds one."""
    person = session.person()
    # Without sign-in the typed name goes on the report marked unauthenticated; with it, the identity.
    reviewer = session.actor_name() if person.name else None
    # Runs on a thread of its own when pressed: export_report makes no Streamlit calls.
    build = functools.partial(rs.export_report, store, patient, eyes, clf, reviewer=reviewer, saved=saved,
                              actor=session.actor())
    st.download_button("Export PDF report", data=build, file_name=safe_filename(patient.pseudo_id),
                       mime="application/pdf", type="primary", icon=":material/picture_as_pdf:",
                       on_click="ignore", key="export_pdf")
    if saved and (person.may("review") or person.may("manage_users")):
        record_export_ui(store, clf, patient.pseudo_id)


def record_export_ui(store: RecordStore, clf: Classifier, pseudo_id: str) -> None:
    """The patient's right of access: everything held on them (JSON, photographs, maps, the PDF) as one ZIP."""
    # Built only when pressed, on the download's own thread; the store logs the export.
    build = functools.partial(export_patient_zip, store, pseudo_id, clf, actor=session.actor())
    st.download_button("Download everything held on this patient", data=build,
                       file_name=safe_filename(pseudo_id, ".zip").replace("cataract_report_", "patient_record_"),
                       mime="application/zip", icon=":material/folder_zip:", on_click="ignore",
                       key="export_record", help="The records as JSON, the photographs, the maps and the PDF report.")
