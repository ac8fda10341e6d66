"""Review (the landing page): a photograph or a patient's eyes, the model's result and evidence, the signed review."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import streamlit as st

from components import review_session as rs
from components.gradcam import METHOD_LABELS, METHODS, ExplainError, Explanation
from components.imaging import IMAGE_EXTENSIONS, ImageError, sha256_bytes
from components.overlay import COLORMAPS, blend
from components.records import (
    EYES,
    FINDINGS,
    GRADES,
    MODALITIES,
    SEXES,
    ExamRecord,
    RecordsError,
    RecordStore,
    ReviewRecord,
)
from components.report import EYES as EYE_NAMES
from components.report import MODALITIES as MODALITY_NAMES
from components.report import EyeFindings, PatientInfo, safe_filename
from dashboard import state
from models import Classifier

UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
FINDING_LABELS = {"normal": "Normal lens", "cataract": "Cataract"}
SEX_LABELS = {"F": "Female", "M": "Male", "X": "Other / not stated"}
QUICK = ""  # the patient choice that means "one photograph, not saved"


def _sentence(error: Exception) -> str:
    """The record store speaks in lower-case clauses; the screen shows sentences."""
    text = str(error).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _md(text: str) -> str:
    """A pseudonymous ID (letters, digits, '-', '_', '.') made safe inside Markdown."""
    return text.replace("_", "\\_")


def _image_for(sha256: str, load: Any) -> rs.ReviewImage:
    cache = state.image_cache()
    image = cache.get(sha256)
    if image is None:
        image = load()
        cache.put(sha256, image)
    return image


# --- settings ---------------------------------------------------------------------------------


def settings_row(clf: Classifier) -> None:
    if st.session_state["target"] not in (rs.PREDICTED, *clf.class_names):
        st.session_state["target"] = rs.PREDICTED  # the model changed under this setting
    method, target, colormap, alpha = st.columns([1.1, 1.1, 1, 1.6], vertical_alignment="bottom")
    method.selectbox("Method", list(METHODS), key="method", format_func=METHOD_LABELS.get,
                     persist_state="session",
                     help="Changing the method computes a new map (the model runs once more).")
    target.selectbox("Explain class", [rs.PREDICTED, *clf.class_names], key="target",
                     format_func=lambda t: "Predicted class" if t == rs.PREDICTED else t,
                     persist_state="session",
                     help="Which class the map explains: the model's prediction, or a class you name.")
    colormap.selectbox("Colormap", COLORMAPS, key="colormap", persist_state="session")
    alpha.slider("Transparency", min_value=0.0, max_value=1.0, step=0.05, key="alpha",
                 persist_state="session",
                 help="Weight of the heatmap in the overlay: 0 shows the photograph only, 1 the heatmap only.")


# --- one eye ----------------------------------------------------------------------------------


Explained = tuple[Explanation, rs.MapKey, dict[str, Any] | None]


def explain_image(store: RecordStore, clf: Classifier, image: rs.ReviewImage, exam: ExamRecord | None,
                  modality: str | None) -> Explained | None:
    target = st.session_state["target"]
    target = None if target == rs.PREDICTED else target
    try:
        with st.spinner("Computing the Grad-CAM map…"):
            explanation, ran = rs.explain_cached(state.map_cache(), clf, image,
                                                 method=st.session_state["method"], target=target)
    except ExplainError as error:
        st.error(str(error))
        return None
    key = rs.map_key(image.sha256, clf, method=explanation.method, target=target)
    attention = state.attention_cache().get((key, modality))
    if attention is None:
        # The check measures on a grid of at most 512 px, so the screen's copy gives the same figures.
        attention = rs.attention_for(image.display, explanation, modality)
        state.attention_cache().put((key, modality), attention)
    if ran:
        if exam is not None:
            rs.record_analysis(store, exam.id, clf, explanation, actor=state.actor(), attention=attention)
        else:
            store.log("explained", actor=state.actor(), object_type="unsaved_image",
                      object_id=image.sha256,
                      details={"model_sha256": clf.weights_sha256, "method": explanation.method,
                               "target": explanation.target, "prediction": explanation.prediction})
    return explanation, key, attention


def result_metrics(clf: Classifier, explanation: Explanation) -> None:
    names = list(clf.class_names)
    columns = st.columns(2 + len(names))
    columns[0].metric("Prediction", explanation.prediction)
    columns[1].metric("Confidence", f"{explanation.confidence:.1%}")
    for column, name in zip(columns[2:], names, strict=True):
        column.metric(f"P({name})", f"{explanation.probabilities[name]:.1%}")
    if clf.positive_index is not None:
        # The report decides by the model's operating threshold, not by the larger probability;
        # the screen says the same thing in the same words.
        positive = names[clf.positive_index]
        p = explanation.probabilities[positive]
        side = "at or above" if p >= clf.threshold else "below"
        finding = "cataract suspected" if p >= clf.threshold else "no cataract detected"
        st.caption(f"P({positive}) {p:.1%} is {side} the operating threshold {clf.threshold:.2f}: "
                   f"{finding}, as the report will say.")


def three_panels(image: rs.ReviewImage, explanation: Explanation, key: rs.MapKey) -> None:
    colormap, alpha = st.session_state["colormap"], float(st.session_state["alpha"])
    display = image.display
    size = (display.shape[1], display.shape[0])
    # The heatmap depends on the map and the colormap only: a slider move reuses it, and
    # redraws just the overlay from the cached map; the model does not run.
    heat_key = (key, colormap, size)
    heat = state.panel_cache().get(heat_key)
    if heat is None:
        panel = rs.heatmap_panel(explanation.cam, size, colormap)
        heat = (rs.jpeg_bytes(panel), panel.shape[1] / size[0])
        state.panel_cache().put(heat_key, heat)
    heat_jpeg, heat_ratio = heat
    overlay = rs.jpeg_bytes(blend(display, explanation.cam, alpha=alpha, colormap=colormap))
    method = METHOD_LABELS.get(explanation.method, explanation.method)
    # Column widths follow the pictures' widths, so the three come out the same height.
    original_col, heat_col, overlay_col = st.columns([1.0, heat_ratio, 1.0])
    original_col.image(image.display_jpeg, caption="Original", width="stretch")
    heat_col.image(heat_jpeg, caption=f"{method} Heatmap", width="stretch")
    overlay_col.image(overlay, caption="Overlay", width="stretch")
    explained = "the predicted class" if explanation.target == explanation.prediction else explanation.target
    note = (" The map is flat: nothing in the photograph raised this class's score."
            if explanation.is_zero else "")
    st.caption(f"{method} at layer {explanation.layer}, explaining {explained}; colormap {colormap}, "
               f"transparency {alpha:.2f}. Photograph {image.original_size[0]}×{image.original_size[1]} "
               f"px, shown reduced.{note} A heatmap shows where the model looked; it is not a lesion outline.")


ATTENTION_FIGURES = {
    "energy_in_lens": "Map energy on the lens",
    "energy_in_border": "Map energy in the border band",
    "energy_on_skin": "Map energy on lids or skin",
    "spread": "Share of the image holding half the energy",
    "peak_in_lens": "Peak on the lens",
    "lens_confidence": "Lens finder's confidence",
}
# A fundus photograph shows no lens: the check measures against the circular field of view.
FUNDUS_FIGURES = {
    **ATTENTION_FIGURES,
    "energy_in_lens": "Map energy inside the fundus field",
    "peak_in_lens": "Peak inside the fundus field",
    "lens_confidence": "Field finder's confidence",
}


def attention_panel(attention: dict[str, Any]) -> None:
    verdict, label = str(attention.get("verdict", "")), str(attention.get("label", ""))
    colour = ("green" if verdict == "on lens" else "red" if verdict.startswith("off lens")
              else "gray" if verdict == "lens not found" else "orange")
    figures = attention.get("figures") or {}
    parts = []
    names = FUNDUS_FIGURES if attention.get("modality") == "fundus" else ATTENTION_FIGURES
    for key, name in names.items():
        value = figures.get(key)
        if isinstance(value, bool):
            parts.append(f"{name}: {'yes' if value else 'no'}")
        elif isinstance(value, (int, float)):
            parts.append(f"{name}: {value:.0%}")
    badge_col, figures_col = st.columns([1, 4], vertical_alignment="center")
    with badge_col:
        st.badge(f"Attention: {label or verdict}", color=colour, icon=":material/center_focus_strong:")
    figures_col.caption(" · ".join(parts))
    if verdict.startswith("off lens"):
        where = "the fundus field" if attention.get("modality") == "fundus" else "the lens"
        st.warning(f"The model's attention lies off {where}: the result may rest on something other "
                   f"than {where}. Check the photograph before relying on it.", icon=":material/warning:")


def show_eye(store: RecordStore, clf: Classifier | None, image: rs.ReviewImage,
             exam: ExamRecord | None, modality: str | None) -> tuple[Explanation | None, dict[str, Any] | None]:
    if clf is None:
        st.image(image.display_jpeg, caption="Original", width=480)
        return None, None
    explained = explain_image(store, clf, image, exam, modality)
    if explained is None:
        return None, None
    explanation, key, attention = explained
    result_metrics(clf, explanation)
    three_panels(image, explanation, key)
    if attention is not None:
        attention_panel(attention)
    return explanation, attention


# --- the clinician's review -------------------------------------------------------------------


def _review_table(review: ReviewRecord) -> None:
    # A table shows user text (names, notes) as plain text, never as Markdown or HTML.
    rows = {
        "Version": str(review.version),
        "Status": "Signed" if review.status == "signed" else "Draft (not signed)",
        "Reviewer": review.reviewer,
        "Agrees with the model": "Yes" if review.agrees else "No",
        "Finding": FINDING_LABELS[review.finding],
        "Grade": review.grade.capitalize(),
        "Notes": review.notes or "—",
    }
    if review.signed_at is not None:
        rows["Signed"] = review.signed_at.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    st.dataframe({"": list(rows), "Review": list(rows.values())}, hide_index=True, width="stretch")


def _save_review(store: RecordStore, exam: ExamRecord, draft: ReviewRecord | None, *,
                 agrees: bool | None, finding: str | None, grade: str | None, notes: str,
                 sign: bool) -> None:
    reviewer = str(st.session_state.get("reviewer", "")).strip()
    if not reviewer:
        st.error("Enter your name in the sidebar before saving a review.")
        return
    if agrees is None or finding is None or grade is None:
        st.error("Choose whether you agree with the model, your finding and a grade.")
        return
    try:
        saved = store.save_review(exam.id, reviewer=reviewer, agrees=agrees, finding=finding,
                                  grade=grade, notes=notes,
                                  review_id=draft.id if draft is not None else None)
        if sign:
            saved = store.sign_review(saved.id, reviewer=reviewer)
    except RecordsError as error:
        st.error(_sentence(error))
        return
    eye = EYE_NAMES[exam.eye]
    state.flash(f"{eye}: review version {saved.version} {'signed' if sign else 'saved'}.")
    st.rerun()


def review_form(store: RecordStore, exam: ExamRecord, latest: ReviewRecord | None) -> None:
    draft = latest if latest is not None and latest.status == "reviewed" else None
    base = draft or latest  # an amendment starts from the signed text
    form_key = f"review_{exam.id}_{latest.id if latest else 0}_{latest.status if latest else 'new'}"
    with st.form(form_key, border=False):
        agree_col, finding_col, grade_col = st.columns([1.1, 1.1, 1.6])
        agrees = agree_col.radio("Do you agree with the model's result?", [True, False],
                          format_func=lambda v: "Agree" if v else "Disagree", horizontal=True,
                          index=None if base is None else (0 if base.agrees else 1))
        finding = finding_col.radio("Your finding", FINDINGS, format_func=FINDING_LABELS.get, horizontal=True,
                           index=None if base is None else FINDINGS.index(base.finding))
        grade = grade_col.radio("Grade", GRADES, format_func=str.capitalize, horizontal=True,
                         index=None if base is None else GRADES.index(base.grade),
                         help="None for a normal lens; mild, moderate or severe for a cataract.")
        notes = st.text_area("Notes", value=base.notes if base is not None else "", max_chars=10_000)
        save_col, sign_col, _ = st.columns([1, 1, 3])
        save = save_col.form_submit_button("Save review", icon=":material/save:")
        sign = sign_col.form_submit_button("Sign", type="primary", icon=":material/draw:",
                                           help="Saves and signs: the time is recorded and the review is locked.")
    if save or sign:
        _save_review(store, exam, draft, agrees=agrees, finding=finding, grade=grade,
                     notes=notes, sign=bool(sign))


def review_panel(store: RecordStore, exam: ExamRecord) -> ReviewRecord | None:
    history = store.review_history(exam.id)
    latest = history[-1] if history else None
    st.markdown("**Clinician review**")
    if latest is not None and latest.status == "signed":
        st.success(f"Signed review, version {latest.version}. It is locked; an amendment is saved "
                   "as a new version and this one is kept.", icon=":material/verified:")
        _review_table(latest)
        with st.expander(f"Amend this review (saves version {latest.version + 1})"):
            review_form(store, exam, latest)
    else:
        if latest is not None:
            st.info(f"Draft review, version {latest.version}: not signed yet.", icon=":material/edit_note:")
        review_form(store, exam, latest)
    if len(history) > 1:
        with st.expander(f"Review history ({len(history)} versions)"):
            for version in reversed(history[:-1]):
                _review_table(version)
    return latest


# --- the two kinds of case ----------------------------------------------------------------------


def _on_quick_upload() -> None:
    upload = st.session_state.get("quick_upload")
    if upload is None:
        st.session_state.pop("quick_case", None)
        return
    data = upload.getvalue()
    # Only the bytes and what the file name says about the eye are kept, not the name itself.
    st.session_state["quick_case"] = {"data": data, "sha256": sha256_bytes(data),
                                      "hint": upload.name, "eye": None, "modality": None}


def quick_uploader() -> None:
    st.file_uploader("Eye photograph: drop one for a quick look (not saved)", type=UPLOAD_TYPES,
                     key="quick_upload", on_change=_on_quick_upload,
                     help="JPEG, PNG, TIFF, BMP, WebP, GIF or DICOM, up to 50 MB.")


# An eye's report input, made only when the report is asked for: it needs the full photograph.
EyeReport = Callable[[], EyeFindings]


def quick_case(store: RecordStore, clf: Classifier | None) -> list[EyeReport]:
    case = st.session_state.get("quick_case")
    if not case:
        st.info("Drop an eye photograph above to see the model's result and its Grad-CAM evidence, "
                "or choose a patient to review and sign.", icon=":material/photo_camera:")
        return []
    try:
        image = _image_for(case["sha256"], lambda: rs.image_from_upload(case["data"], case["hint"]))
    except ImageError as error:
        st.error(f"This file cannot be shown. {error}", icon=":material/broken_image:")
        return []
    if case["eye"] is None and image.laterality is not None:
        case["eye"] = image.laterality
    if case["modality"] is None:
        case["modality"] = rs.guess_modality(image.display) or "external"
    with st.container(border=True):
        title, eye_col, modality_col = st.columns([2, 1.2, 1.2], vertical_alignment="bottom")
        title.subheader("Unsaved case")
        eye = eye_col.radio("Eye", EYES, format_func=EYE_NAMES.get, horizontal=True,
                            index=None if case["eye"] is None else EYES.index(case["eye"]),
                            key=f"quick_eye_{case['sha256'][:16]}",
                            help="Read from the file when it says; needed for the report.")
        case["eye"] = eye
        modality = modality_col.selectbox("Modality", MODALITIES, format_func=MODALITY_NAMES.get,
                                          index=MODALITIES.index(case["modality"]),
                                          key=f"quick_modality_{case['sha256'][:16]}")
        case["modality"] = modality
        explanation, attention = show_eye(store, clf, image, None, modality)
        save_quick_case(store)
    if explanation is None or eye is None:
        if explanation is not None:
            st.caption("Choose the eye to export a report.")
        return []
    return [functools.partial(rs.eye_findings, eye=eye, image=image, explanation=explanation,
                              modality=modality, exam_date=date.today(),
                              colormap=st.session_state["colormap"],
                              alpha=float(st.session_state["alpha"]), attention=attention)]


def _on_save_quick_case(store: RecordStore) -> None:
    case = st.session_state.get("quick_case")
    pseudo_id = st.session_state.get("save_quick_to")
    if not case or not pseudo_id or case.get("eye") is None:
        st.session_state["save_quick_error"] = "Choose the eye and the patient first."
        return
    image = state.image_cache().get(case["sha256"]) or rs.image_from_upload(case["data"], case["hint"])
    try:
        exam = store.add_exam(pseudo_id, eye=case["eye"], pixels=image.full(),
                              exam_date=st.session_state.get("save_quick_date") or date.today(),
                              modality=case["modality"], actor=state.actor())
    except RecordsError as error:
        st.session_state["save_quick_error"] = _sentence(error)
        return
    st.session_state.pop("save_quick_error", None)
    # The stored PNG holds the same pixels under another name: no second decode.
    state.image_cache().put(exam.image_sha256, replace(image, sha256=exam.image_sha256))
    st.session_state["current_patient"] = pseudo_id
    state.flash(f"{EYE_NAMES[exam.eye]} photograph saved to patient {_md(pseudo_id)}.")


def save_quick_case(store: RecordStore) -> None:
    patients = [p.pseudo_id for p in store.list_patients()]
    with st.expander("Not saved. Keep this photograph in a patient's record to review and sign it",
                     icon=":material/save:"):
        if not patients:
            st.caption("Create the patient first (New patient, above right).")
            return
        to_col, date_col, button_col = st.columns([2, 1.2, 1], vertical_alignment="bottom")
        to_col.selectbox("Patient", patients, key="save_quick_to")
        date_col.date_input("Exam date", value=date.today(), max_value=date.today(), key="save_quick_date")
        button_col.button("Save to record", icon=":material/save:", on_click=_on_save_quick_case, args=(store,))
        problem = st.session_state.get("save_quick_error")
        if problem:
            st.error(problem)


def _on_create_patient(store: RecordStore) -> None:
    values = {key: st.session_state.get(f"new_patient_{key}") for key in ("id", "name", "birth", "sex")}
    pseudo_id = (values["id"] or "").strip()
    try:
        store.create_patient(pseudo_id, name=(values["name"] or "").strip() or None,
                             birth_date=values["birth"], sex=values["sex"], actor=state.actor())
    except RecordsError as error:
        st.session_state["new_patient_error"] = _sentence(error)
        return
    st.session_state.pop("new_patient_error", None)
    for key in ("id", "name"):
        st.session_state[f"new_patient_{key}"] = ""
    st.session_state["new_patient_birth"] = None
    st.session_state["new_patient_sex"] = None
    st.session_state["current_patient"] = pseudo_id
    state.flash(f"Patient {_md(pseudo_id)} created.")


def new_patient_form(store: RecordStore) -> None:
    with st.expander("New patient", icon=":material/person_add:"):
        with st.form("new_patient", border=False):
            st.text_input("Pseudonymous ID (required)", key="new_patient_id", max_chars=64,
                          help="Letters, digits, '-', '_' or '.'; never a name.")
            st.text_input("Name (optional)", key="new_patient_name", max_chars=200)
            st.date_input("Birth date (optional)", key="new_patient_birth", value=None,
                          min_value=date(1900, 1, 1), max_value=date.today())
            st.selectbox("Sex (optional)", SEXES, key="new_patient_sex", index=None,
                         format_func=SEX_LABELS.get, placeholder="Not recorded")
            st.form_submit_button("Create patient", on_click=_on_create_patient, args=(store,))
        problem = st.session_state.get("new_patient_error")
        if problem:
            st.error(problem)


def add_image_panel(store: RecordStore, pseudo_id: str) -> None:
    round_ = st.session_state.setdefault("add_upload_round", 0)
    upload = st.file_uploader(f"Add a photograph to patient {_md(pseudo_id)}", type=UPLOAD_TYPES,
                              key=f"add_upload_{round_}",
                              help="JPEG, PNG, TIFF, BMP, WebP, GIF or DICOM, up to 50 MB.")
    if upload is None:
        return
    data = upload.getvalue()
    sha = sha256_bytes(data)
    try:
        image = _image_for(sha, lambda: rs.image_from_upload(data, upload.name))
    except ImageError as error:
        st.error(f"This file cannot be added. {error}", icon=":material/broken_image:")
        return
    eye_col, date_col, modality_col, button_col = st.columns([1.3, 1, 1.2, 1], vertical_alignment="bottom")
    eye = eye_col.radio("Eye", EYES, format_func=EYE_NAMES.get, horizontal=True,
                        index=None if image.laterality is None else EYES.index(image.laterality),
                        key=f"add_eye_{sha[:16]}")
    exam_date = date_col.date_input("Exam date", value=date.today(), max_value=date.today(),
                                    key=f"add_date_{sha[:16]}")
    guessed = rs.guess_modality(image.display) or "external"
    modality = modality_col.selectbox("Modality", MODALITIES, format_func=MODALITY_NAMES.get,
                                      index=MODALITIES.index(guessed), key=f"add_modality_{sha[:16]}")
    if button_col.button("Add to record", type="primary", icon=":material/add_photo_alternate:"):
        if eye is None:
            st.error("Choose which eye the photograph shows.")
            return
        try:
            with st.spinner("Saving the photograph…"):
                exam = store.add_exam(pseudo_id, eye=eye, pixels=image.full(), exam_date=exam_date,
                                      modality=modality, actor=state.actor())
        except RecordsError as error:
            st.error(_sentence(error))
            return
        # The stored PNG holds the same pixels under another name: no second decode.
        state.image_cache().put(exam.image_sha256, replace(image, sha256=exam.image_sha256))
        st.session_state["add_upload_round"] = round_ + 1
        state.flash(f"{EYE_NAMES[eye]} photograph added.")
        st.rerun()


def _exam_label(exam: ExamRecord) -> str:
    return f"{exam.exam_date.isoformat()} · {MODALITY_NAMES[exam.modality]}"


def patient_case(store: RecordStore, clf: Classifier | None, pseudo_id: str) -> tuple[PatientInfo, list[EyeReport]]:
    patient = store.get_patient(pseudo_id)
    st.subheader(f"Patient {_md(patient.pseudo_id)}")
    details = [patient.name or ""]
    if patient.birth_date is not None:
        details.append(f"born {patient.birth_date.isoformat()}")
    if patient.sex:
        details.append(SEX_LABELS.get(patient.sex, patient.sex))
    shown = [d for d in details if d]
    if shown:
        st.text(" · ".join(shown))  # plain text: a name is never Markdown or HTML
    if clf is not None:
        settings_row(clf)
    exams = store.exams(pseudo_id)
    if not exams:
        st.info("No photographs yet: add one above.", icon=":material/photo_camera:")
    findings: list[EyeReport] = []
    for eye in EYES:
        own = [e for e in exams if e.eye == eye]
        if not own:
            continue
        with st.container(border=True):
            head, pick = st.columns([2, 2], vertical_alignment="bottom")
            head.subheader(EYE_NAMES[eye])
            exam = own[-1]
            if len(own) > 1:
                exam = pick.selectbox("Exam", own, index=len(own) - 1, format_func=_exam_label,
                                      key=f"exam_{pseudo_id}_{eye}")
            else:
                pick.caption(_exam_label(exam))
            try:
                image = _image_for(exam.image_sha256, lambda e=exam: rs.image_from_pixels(
                    e.image_sha256, store.get_image(e.image_sha256),
                    functools.partial(store.get_image, e.image_sha256)))
            except RecordsError as error:
                st.error(_sentence(error))
                continue
            explanation, attention = show_eye(store, clf, image, exam, exam.modality)
            latest = review_panel(store, exam)
        if explanation is not None:
            findings.append(functools.partial(
                rs.eye_findings, eye=eye, image=image, explanation=explanation, exam=exam, review=latest,
                colormap=st.session_state["colormap"], alpha=float(st.session_state["alpha"]),
                attention=attention))
    return rs.patient_info(patient), findings


# --- the report -------------------------------------------------------------------------------


def _report_pdf(store: RecordStore, patient: PatientInfo, eye_reports: list[EyeReport], clf: Classifier,
                reviewer: str | None, saved: bool, actor: str) -> bytes:
    # Runs when the button is pressed, on a thread of its own: no Streamlit calls in here.
    eyes = [make() for make in eye_reports]
    pdf = rs.case_report(patient, eyes, clf, reviewer=reviewer)
    store.log("exported", actor=actor, patient_pseudo_id=patient.pseudo_id if saved else None,
              object_type="report",
              details={"eyes": [e.eye for e in eyes], "model_sha256": clf.weights_sha256,
                       "saved_patient": saved})
    return pdf


def export_button(store: RecordStore, clf: Classifier, patient: PatientInfo,
                  eyes: list[EyeReport], saved: bool) -> None:
    reviewer = str(st.session_state.get("reviewer", "")).strip() or None
    # The PDF is built only when asked for (a callable), so moving a slider never builds one.
    st.download_button(
        "Export PDF report",
        data=functools.partial(_report_pdf, store, patient, eyes, clf, reviewer, saved, state.actor()),
        file_name=safe_filename(patient.pseudo_id),
        mime="application/pdf",
        type="primary",
        icon=":material/picture_as_pdf:",
        on_click="ignore",
        key="export_pdf",
    )


# --- the page ---------------------------------------------------------------------------------

st.title("Review")
state.show_flashes()
clf, problem = state.classifier()
state.model_notice(clf, problem)
store = state.store()

patient_ids = [p.pseudo_id for p in store.list_patients()]
if st.session_state["current_patient"] not in patient_ids:
    st.session_state["current_patient"] = QUICK

upload_col, patient_col = st.columns([3, 2], gap="large")
with patient_col:
    st.selectbox("Patient", [QUICK, *patient_ids], key="current_patient", persist_state="session",
                 format_func=lambda p: "Quick look: one photograph, not saved" if p == QUICK else p)
    new_patient_form(store)
current = st.session_state["current_patient"]
with upload_col:
    if current == QUICK:
        quick_uploader()
    else:
        add_image_panel(store, current)

if clf is None:
    st.info("Results and maps appear here once a model is loaded.", icon=":material/info:")

if current == QUICK:
    if clf is not None:
        settings_row(clf)
    eyes = quick_case(store, clf)
    case = st.session_state.get("quick_case")
    patient = PatientInfo(pseudo_id=rs.anonymous_id(case["sha256"])) if case else None
else:
    patient, eyes = patient_case(store, clf, current)

if clf is not None and patient is not None and eyes:
    export_button(store, clf, patient, eyes, saved=current != QUICK)
