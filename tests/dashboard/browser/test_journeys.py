"""The dashboard's main journeys in a real browser, each step checked for a shown or logged exception.

Chromium drives `streamlit run` on 127.0.0.1 as a person would: the demo model and the six demo
patients of `make run`, a real PACS (Orthanc) and, for sign-in, a real OpenID Connect provider.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from components.records import RecordStore
from components.screening.vocabulary import ROLE_LABELS
from components.workflows.demo_patients import DEMO_PATIENTS
from models import save_checkpoint
from tests.dashboard.browser.conftest import PACS_PATIENT, PEOPLE
from tests.dashboard.browser.support import WAIT_MS, Tab, pdf_text, zip_names
from tests.support import CSDI, seeded_model

pytestmark = pytest.mark.browser

DEMO_IDS = [p.pseudo_id for p in DEMO_PATIENTS]
REVIEW_FORM = '[data-testid="stForm"]'
UPLOAD = '[data-testid="stFileUploaderDropzoneInput"]'


READING_ONLY = "Reading only: reviewing and signing need the clinician role."


def _open_patient(tab: Tab, pseudo_id: str, *, reading_only: bool = False) -> None:
    """Pick the patient on the Review page; both eyes, their six panels and the report button are drawn.

    Under the left eye's panels comes its review form, or for a reader the line saying reading only.
    """
    tab.choose("Patient", pseudo_id)
    tab.page.get_by_role("heading", name=f"Patient {pseudo_id}", exact=True).wait_for(timeout=WAIT_MS)
    tab.settle()
    tab.wait_panels(6)
    # The left eye's form (or reading-only line) is drawn after the panels, in the same run: wait for it.
    if reading_only:
        tab.page.get_by_text(READING_ONLY).nth(1).wait_for(timeout=WAIT_MS)
    else:
        _visible_review_forms(tab).nth(1).wait_for(timeout=WAIT_MS)
    tab.settle()
    for eye in ("Right eye (OD)", "Left eye (OS)"):
        assert tab.page.get_by_role("heading", name=eye, exact=True).count() == 1, eye
    captions = tab.page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    assert captions == ["Original", "Grad-CAM Heatmap", "Overlay"] * 2


def _visible_review_forms(tab: Tab):
    return tab.page.locator(REVIEW_FORM).filter(has_text="Do you agree with the model's result?").filter(visible=True)


def _sign_eye(tab: Tab, eye: str, finding: str, grade: str) -> None:
    """Fill and sign the first review form still open (the right eye's before the left's)."""
    form = _visible_review_forms(tab).first
    tab.radio("Do you agree", "Agree", within=form)
    tab.radio("Your finding", finding, within=form)
    tab.radio("Grade", grade, within=form)
    form.get_by_role("button", name="Sign", exact=True).click()
    tab.page.get_by_text(f"{eye}: review version 1 signed.").wait_for(timeout=WAIT_MS)
    tab.settle()


def test_quick_look_one_photograph(demo_app, new_tab) -> None:
    tab = new_tab(demo_app, "quick-look")
    with tab.step("open the dashboard"):
        tab.open()
        tab.page.get_by_text("Drop an eye photograph above").wait_for(timeout=WAIT_MS)
    with tab.step("upload a photograph"):
        tab.page.locator(UPLOAD).first.set_input_files(str(CSDI / "LZ-OD.jpg"))
        tab.wait_panels(3)
        tab.settle()
        assert tab.page.locator('[data-testid="stImageCaption"]').all_inner_texts() == [
            "Original", "Grad-CAM Heatmap", "Overlay"]
        assert tab.page.get_by_text("Prediction", exact=True).count() == 1
    with tab.step("move the transparency slider"):
        before = tab.panel_sources()
        thumb = tab.page.locator('[data-testid="stSlider"] input[type="range"]')
        assert thumb.input_value() == "0.5"
        thumb.focus()
        tab.page.keyboard.press("ArrowRight")
        tab.page.wait_for_function("old => document.querySelectorAll('[data-testid=\"stImage\"] img')[2].src !== old",
                                   arg=before[2], timeout=WAIT_MS)
        tab.wait_panels(3)
        after = tab.panel_sources()
        assert after[:2] == before[:2]  # only the overlay is blended again
        assert thumb.input_value() == "0.55"
    with tab.step("change the colormap"):
        before = tab.panel_sources()
        tab.choose("Colormap", "viridis")
        tab.page.wait_for_function(
            """old => { const s = [...document.querySelectorAll('[data-testid="stImage"] img')].map(i => i.src);
                        return s.length === 3 && s[1] !== old[1] && s[2] !== old[2]; }""", arg=before, timeout=WAIT_MS)
        tab.wait_panels(3)
        assert tab.panel_sources()[0] == before[0]
    with tab.step("download the PDF report"):
        name, pdf = tab.download("Export PDF report")
        assert name.startswith("cataract_report_ANON-")
        assert name.endswith(".pdf")
        text = " ".join(pdf_text(pdf))
        assert "Right eye (OD)" in text
        assert "Left eye (OS)" not in text
        assert "viridis" in text


def test_patient_review_of_every_demo_patient_then_the_worklist(demo_app, new_tab) -> None:
    tab = new_tab(demo_app, "patient-review")
    with tab.step("open the dashboard"):
        tab.open()
    for pseudo_id in DEMO_IDS:
        with tab.step(f"open {pseudo_id}"):
            _open_patient(tab, pseudo_id)
            assert _visible_review_forms(tab).count() == 2
            assert tab.page.get_by_role("button", name="Export PDF report").count() == 1
    patient = "DEMO-002"  # early cataract in both eyes
    with tab.step(f"open {patient} again and type the reviewer's name"):
        _open_patient(tab, patient)
        name = tab.page.get_by_role("textbox", name="Your name")
        name.fill("Dr Journey")
        name.press("Enter")
    with tab.step("sign the right eye"):
        _sign_eye(tab, "Right eye (OD)", "Cataract", "Mild")
    with tab.step("sign the left eye"):
        _sign_eye(tab, "Left eye (OS)", "Cataract", "Mild")
        assert _visible_review_forms(tab).count() == 0
        assert tab.page.get_by_text("Signed review, version 1.").count() == 2
    with tab.step("export the PDF report"):
        filename, pdf = tab.download("Export PDF report")
        assert filename == f"cataract_report_{patient}.pdf"
        text = " ".join(pdf_text(pdf))
        assert "Right eye (OD)" in text
        assert "Left eye (OS)" in text
        assert text.count("Signed by Dr Journey (unauthenticated),") == 2
        assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2
    with tab.step("download everything held on the patient"):
        filename, archive = tab.download("Download everything held on this patient")
        assert filename == f"patient_record_{patient}.zip"
        names = zip_names(archive)
        assert "report.pdf" in names
        assert sum(n.endswith(".png") and n.startswith("images/") for n in names) == 2, names
    with tab.step("the worklist shows the patient as signed"):
        tab.go("Worklist")
        tab.settle()
        grid = tab.page.locator('[data-testid="stDataFrame"]')
        grid.wait_for(timeout=WAIT_MS)
        signed = tab.page.locator('[data-testid="stMetric"]').filter(has=tab.page.get_by_text("Signed", exact=True))
        assert signed.locator('[data-testid="stMetricValue"]').inner_text() == "1"
    with tab.step("filter the worklist to signed patients"):
        tab.choose("Review status", "Signed")
        tab.settle()
        tab.page.locator('[data-testid="stSelectbox"]').filter(has_text="Open a patient").click()
        assert tab.page.get_by_role("option").all_inner_texts() == [patient]  # the only signed patient
        tab.page.get_by_role("option", name=patient, exact=True).click()
    with tab.step("open the signed patient in Review"):
        tab.page.get_by_role("button", name="Open in Review").click()
        tab.page.get_by_role("heading", name=f"Patient {patient}", exact=True).wait_for(timeout=WAIT_MS)
        tab.settle()
        assert tab.page.get_by_text("Signed review, version 1.").count() == 2
    store = RecordStore(data_dir=demo_app.data)
    try:
        reviews = [store.review_history(exam.id)[-1] for exam in store.exams(patient)]
        assert sorted((r.status, r.finding, r.grade, r.signer) for r in reviews) == [
            ("signed", "cataract", "mild", "Dr Journey (unauthenticated)")] * 2
    finally:
        store.close()


def test_batch_audit_and_compare_one_small_run_each(demo_app, new_tab, tmp_path) -> None:
    photos = [str(CSDI / n) for n in ("LZ-OD.jpg", "LZ-OS.jpg", "HAY1.jpg")]
    tab = new_tab(demo_app, "runs")
    with tab.step("open the Batch page"):
        tab.open("batch")
    with tab.step("run a batch of three photographs"):
        tab.page.locator(UPLOAD).first.set_input_files(photos)
        tab.page.get_by_text("LZ-OS.jpg").wait_for(timeout=WAIT_MS)
        tab.page.get_by_role("button", name="Run batch").click()
        tab.page.get_by_role("heading", name="Results: 3 photographs").wait_for(timeout=WAIT_MS)
    with tab.step("download the batch CSV"):
        filename, data = tab.download("Download CSV")
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        assert filename == "summary.csv"
        assert sorted(r["file"] for r in rows) == ["HAY1.jpg", "LZ-OD.jpg", "LZ-OS.jpg"]
    with tab.step("open the Audit page"):
        tab.go("Audit")
    with tab.step("audit two labelled sets"):
        boxes = tab.page.locator(UPLOAD)
        boxes.nth(0).set_input_files(photos[:1])
        tab.page.get_by_text("LZ-OD.jpg").wait_for(timeout=WAIT_MS)
        tab.settle()  # the first upload's run redraws the boxes: the second goes into the new one
        boxes.nth(1).set_input_files(photos[1:])
        tab.page.get_by_text("HAY1.jpg").wait_for(timeout=WAIT_MS)
        tab.settle()
        tab.page.get_by_role("button", name="Run audit").click()
        tab.page.get_by_role("heading", name="Results: 3 photographs").wait_for(timeout=WAIT_MS)
    with tab.step("download the audit CSV and gallery"):
        filename, data = tab.download("Download audit.csv")
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        assert filename == "audit.csv"
        assert sorted((r["file"].rsplit("/", 1)[-1], r["label"]) for r in rows) == [
            ("HAY1.jpg", "Normal"), ("LZ-OD.jpg", "Cataract"), ("LZ-OS.jpg", "Normal")]
        filename, html = tab.download("Download the gallery (HTML)")
        assert filename == "audit_gallery.html"
        assert html.startswith(b"<!DOCTYPE html>")
        assert b"<img" in html
    model_b = tmp_path / "model_b.pt"
    save_checkpoint(model_b, seeded_model(0), class_names=("Cataract", "Normal"), card={"name": "journey-b"})
    with tab.step("open the Compare page"):
        tab.go("Compare")
    with tab.step("compare the demo model with an uploaded checkpoint"):
        tab.radio("Model B", "Upload a checkpoint")
        tab.page.get_by_text("Checkpoint (.pt or .pth)").wait_for(timeout=WAIT_MS)
        boxes = tab.page.locator(UPLOAD)
        boxes.nth(0).set_input_files(str(model_b))
        tab.page.get_by_text(model_b.name).wait_for(timeout=WAIT_MS)
        tab.settle()  # as above: the second box is the one the first upload's run drew
        boxes.nth(1).set_input_files(photos[:2])
        tab.page.get_by_text("LZ-OS.jpg").wait_for(timeout=WAIT_MS)
        tab.settle()
        tab.page.get_by_role("button", name="Compare", exact=True).click()
        tab.page.get_by_role("heading", name="Results: 2 photographs").wait_for(timeout=WAIT_MS)
        assert tab.page.get_by_text("Model B: journey-b", exact=False).count() == 1


def test_pull_a_study_from_the_pacs(demo_app, pacs, new_tab) -> None:
    tab = new_tab(demo_app, "pacs")
    with tab.step("open the PACS page"):
        tab.open("pacs")
    with tab.step("search the PACS"):
        tab.page.get_by_label("Patient ID").fill(PACS_PATIENT)
        tab.page.get_by_role("button", name="Search").click()
        tab.page.locator('[data-testid="stDataFrame"]').wait_for(timeout=WAIT_MS)
    with tab.step("pull the study into a patient's record"):
        tab.choose("Into the record of", "DEMO-006")
        tab.page.get_by_role("button", name="Pull into the patient's record").click()
        tab.page.get_by_text("1 photograph(s) added to the record").wait_for(timeout=WAIT_MS)
    store = RecordStore(data_dir=demo_app.data)
    try:
        assert sorted(e.eye for e in store.exams("DEMO-006")) == ["OD", "OD", "OS"]  # the pulled right eye added
    finally:
        store.close()


def _sign_in(tab: Tab, role: str) -> None:
    tab.open()
    tab.page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
    tab.page.get_by_role("button", name=PEOPLE[role]["sub"], exact=True).click(timeout=WAIT_MS)  # the provider's page
    tab.page.locator('[data-testid="stSidebar"]').get_by_text(PEOPLE[role]["name"]).wait_for(timeout=WAIT_MS)
    tab.settle()


def test_signed_in_clinician_reviews_and_viewer_only_reads(clinic_app, provider, new_tab) -> None:
    patient = "DEMO-004"
    clinician = new_tab(clinic_app, "clinician")
    with clinician.step("a visitor sees only the sign-in page"):
        clinician.open()
        clinician.page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
        assert patient not in clinician.page.content()
    with clinician.step("sign in as a clinician"):
        _sign_in(clinician, "clinician")
        assert clinician.page.get_by_role("textbox", name="Your name").count() == 0
        # The role, exactly (the sidebar's disclaimer also mentions "the reviewing clinician"), once.
        sidebar = clinician.page.locator('[data-testid="stSidebar"]')
        expect(sidebar.get_by_text(ROLE_LABELS["clinician"], exact=True)).to_have_count(1, timeout=WAIT_MS)
    with clinician.step(f"open {patient}"):
        _open_patient(clinician, patient)
    with clinician.step("sign the right eye"):
        _sign_eye(clinician, "Right eye (OD)", "Normal lens", "None")
    with clinician.step("sign the left eye"):
        _sign_eye(clinician, "Left eye (OS)", "Cataract", "Moderate")
    with clinician.step("export the PDF report"):
        _, pdf = clinician.download("Export PDF report")
        text = " ".join(pdf_text(pdf))
        assert text.count(f"Signed by {PEOPLE['clinician']['name']},") == 2
        assert "unauthenticated" not in text

    with clinician.step("sign out"):
        clinician.page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
        clinician.page.get_by_role("button", name="End session").click(timeout=WAIT_MS)  # the provider's page
        clinician.page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
        assert patient not in clinician.page.content()

    viewer = new_tab(clinic_app, "viewer")
    with viewer.step("sign in as a viewer"):
        _sign_in(viewer, "viewer")
    with viewer.step(f"open {patient}, signed"):
        _open_patient(viewer, patient, reading_only=True)
        assert viewer.page.get_by_text(READING_ONLY).count() == 2
    for title in ("Review", "Worklist", "Batch", "Audit", "Compare", "PACS", "Model"):
        with viewer.step(f"open {title} as a viewer"):
            viewer.go(title)
            viewer.settle()
            for forbidden in ("Sign", "Save review", "Load this checkpoint", "Load the uploaded checkpoint",
                              "Pull into the patient's record", "Create patient", "Add to record"):
                assert viewer.page.get_by_role("button", name=forbidden, exact=True).count() == 0, forbidden
            assert viewer.page.get_by_text("New patient").count() == 0
            assert viewer.page.get_by_text("Amend this review").count() == 0

    store = RecordStore(data_dir=clinic_app.data)
    try:
        reviews = [store.review_history(exam.id)[-1] for exam in store.exams(patient)]
        assert {(r.status, r.signer, r.signer_issuer, r.signer_subject) for r in reviews} == {
            ("signed", PEOPLE["clinician"]["name"], provider, "dr-ada")}
        people = {(e.action, e.actor_subject) for e in store.audit_trail(patient)}
        assert ("signed", "dr-ada") in people
        assert ("viewed", "vic-viewer") in people
        assert store.verify().ok
        record = store.get_patient(patient)
    finally:
        store.close()
    # The operator's log: JSON lines on the server's stderr, by sign-in, never by patient.
    lines = [json.loads(line) for line in clinic_app.log.read_text().splitlines() if line.startswith("{")]
    said = {(line["event"], line.get("actor_subject")) for line in lines}
    for expected in [("signed_in", "dr-ada"), ("viewed", "dr-ada"), ("signed", "dr-ada"), ("signed_out", "dr-ada"),
                     ("exported", "dr-ada"), ("signed_in", "vic-viewer"), ("viewed", "vic-viewer")]:
        assert expected in said, expected
    assert {line["actor_issuer"] for line in lines if "actor_issuer" in line} == {provider}
    logged = clinic_app.log.read_text()
    assert record.birth_date is not None  # the demo patients have a birth date, not a name
    for identifying in [patient, record.birth_date.isoformat(), *(record.name or "").split()]:
        assert identifying not in logged, identifying


def test_admin_switches_the_model(clinic_app, new_tab, tmp_path) -> None:
    tab = new_tab(clinic_app, "admin")
    with tab.step("sign in as an administrator"):
        _sign_in(tab, "admin")
    model = tmp_path / "switched.pt"
    save_checkpoint(model, seeded_model(1), class_names=("Cataract", "Normal"), card={"name": "journey-switched"})
    with tab.step("open the Model page"):
        tab.go("Model")
        tab.page.get_by_role("heading", name="cataract-b0-demo").wait_for(timeout=WAIT_MS)
    with tab.step("load another checkpoint"):
        tab.page.get_by_text("Upload a checkpoint (.pt or .pth)").wait_for(timeout=WAIT_MS)
        tab.page.locator(UPLOAD).first.set_input_files(str(model))
        tab.page.get_by_role("button", name="Load the uploaded checkpoint").click()
        tab.page.get_by_text("Model loaded: weights").wait_for(timeout=WAIT_MS)
        tab.page.get_by_role("heading", name="journey-switched").wait_for(timeout=WAIT_MS)
        sidebar = tab.page.locator('[data-testid="stSidebar"]')
        assert sidebar.get_by_text("Model: journey-switched", exact=False).count() == 1
    with tab.step("go back to the default model"):
        tab.page.get_by_role("button", name="Back to the default model").click()
        tab.page.get_by_role("heading", name="cataract-b0-demo").wait_for(timeout=WAIT_MS)
