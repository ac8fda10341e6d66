"""The dashboard under Streamlit's AppTest: every page, re-blending without the model, restarts, PDF, concurrency."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from components.explanation.cam import explain
from components.explanation.overlay import blend, colorize, resize_map
from components.imaging.loading import load_rgb, sha256_bytes
from components.lens.attention import check
from components.records import RecordStore
from components.workflows import review as rs
from components.workflows.batch import explain_files
from dashboard.folders import MISSING_FOLDER, OUTSIDE_DATA
from dashboard.keys import EyeScope, widget_key
from tests.dashboard.support import (
    ModelCalls,
    RecordingMediaFileManager,
    expected,
    images,
    metrics,
    new_app,
    pdf_of,
    served,
    upload_quick,
)
from tests.support import CSDI, seeded_model, who


def test_landing_upload_shows_three_panels_and_the_prediction(env, clf) -> None:
    path = CSDI / "DLY-OD.jpg"
    pixels, ex = expected(clf, path)
    at = upload_quick(new_app(), "DLY-OD.jpg", path.read_bytes())

    assert not at.error
    shown = images(at)
    assert list(shown) == ["Original", "Grad-CAM Heatmap", "Overlay"]
    got = metrics(at)
    assert got["Prediction"] == ex.prediction
    assert got["Confidence"] == f"{ex.confidence:.1%}"
    for name in clf.class_names:
        assert got[f"P({name})"] == f"{ex.probabilities[name]:.1%}"
    # The eye comes from the file name (DLY-OD); the photograph is shown reduced to 1024 px.
    assert at.radio(key=EyeScope(sha256_bytes(path.read_bytes())).key("quick_eye")).value == "OD"
    original = served(shown["Original"])
    assert original.shape == (round(1822 * 1024 / 2734), 1024, 3)
    display = rs.downscale(pixels)
    assert np.abs(original.astype(int) - display).mean() < 2.5  # JPEG at quality 90
    overlay = served(shown["Overlay"])
    assert np.abs(overlay.astype(int) - blend(display, ex.cam, alpha=0.5, colormap="jet")).mean() < 2.5
    heat = served(shown["Grad-CAM Heatmap"])
    assert heat.shape[0] == display.shape[0]
    assert heat.shape[1] > display.shape[1]
    want = colorize(resize_map(ex.cam, (display.shape[1], display.shape[0])), "jet")
    assert np.abs(heat[:, : display.shape[1]].astype(int) - want).mean() < 2.5
    # The attention check's verdict for this map, on the modality it reads off the photograph.
    modality = at.selectbox(key=EyeScope(sha256_bytes(path.read_bytes())).key("quick_modality")).value
    assert modality == rs.guess_modality(display) == "fundus"
    verdict = check(display, ex.cam, modality="fundus")
    assert verdict.label == check(pixels, ex.cam, modality="fundus").label
    assert [m.value for m in at.markdown if "Attention:" in m.value] == [
        f":{'green' if verdict.verdict == 'on lens' else 'orange'}-badge[:material/center_focus_strong: "
        f"Attention: {verdict.label}]"]


def test_slider_and_colormap_reblend_without_running_the_model(env, clf) -> None:
    path = CSDI / "DLY-OD.jpg"
    pixels, ex = expected(clf, path)
    display = rs.downscale(pixels)
    at = upload_quick(new_app(), "DLY-OD.jpg", path.read_bytes())
    before = images(at)
    calls = ModelCalls(clf.model)
    try:
        at.slider(key="alpha").set_value(0.8).run()
        after_slider = images(at)
        assert calls.count == 0
        assert after_slider["Overlay"] != before["Overlay"]
        assert after_slider["Grad-CAM Heatmap"] == before["Grad-CAM Heatmap"]
        assert after_slider["Original"] == before["Original"]
        overlay = served(after_slider["Overlay"])
        assert np.abs(overlay.astype(int) - blend(display, ex.cam, alpha=0.8, colormap="jet")).mean() < 2.5

        at.selectbox(key="colormap").set_value("viridis").run()
        after_colormap = images(at)
        assert calls.count == 0
        assert after_colormap["Grad-CAM Heatmap"] != after_slider["Grad-CAM Heatmap"]
        overlay = served(after_colormap["Overlay"])
        assert np.abs(overlay.astype(int) - blend(display, ex.cam, alpha=0.8, colormap="viridis")).mean() < 2.5

        # A method change is a new map: the model runs (once), and the metrics stay the model's.
        at.selectbox(key="method").set_value("layercam").run()
        assert calls.count == 1
        assert "LayerCAM Heatmap" in images(at)
        assert metrics(at)["Prediction"] == ex.prediction
    finally:
        calls.remove()
    assert not at.exception


def test_corrupt_upload_shows_one_clear_error_and_the_page_keeps_working(env, clf) -> None:
    at = upload_quick(new_app(), "eye.jpg", b"\xff\xd8\xff\xe0" + b"not really a photograph" * 10)
    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith("This file cannot be shown.")
    assert "eye.jpg" not in message
    assert not images(at)
    assert not at.metric
    at.file_uploader(key="quick_upload").clear()
    path = CSDI / "LZ-OS.jpg"
    upload_quick(at, "LZ-OS.jpg", path.read_bytes())
    assert not at.error
    assert list(images(at)) == ["Original", "Grad-CAM Heatmap", "Overlay"]
    assert metrics(at)["Prediction"] == expected(clf, path)[1].prediction


def test_export_pdf_for_the_unsaved_case(env, clf) -> None:
    at = upload_quick(new_app(), "DLY-OD.jpg", (CSDI / "DLY-OD.jpg").read_bytes())
    pdf = pdf_of(at)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    store = RecordStore(data_dir=env)
    try:
        exported = [e for e in store.audit_trail() if e.action == "exported"]
        assert len(exported) == 1
        assert exported[0].details["eyes"] == ["OD"]
        assert exported[0].patient_pseudo_id is None
    finally:
        store.close()


def test_a_quick_look_is_saved_to_a_patient_without_uploading_again(env, clf) -> None:
    path = CSDI / "LZ-OS.jpg"
    at = upload_quick(new_app(), "LZ-OS.jpg", path.read_bytes())
    at.text_input(key="new_patient_id").set_value("P-0100")
    next(b for b in at.button if b.label == "Create patient").click().run()
    at.selectbox(key="current_patient").set_value("").run()  # back to the quick look
    at.selectbox(key="save_quick_to").set_value("P-0100")
    next(b for b in at.button if b.label == "Save to record").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="current_patient").value == "P-0100"
    assert [h.value for h in at.subheader][:2] == ["Patient P-0100", "Left eye (OS)"]
    store = RecordStore(data_dir=env)
    try:
        (exam,) = store.exams("P-0100")
        assert (exam.eye, exam.modality) == ("OS", "fundus")
        np.testing.assert_array_equal(store.get_image(exam.image_sha256), load_rgb(path))
    finally:
        store.close()


def _create_patient_with_photo(at: AppTest, pseudo_id: str, photo: Path) -> None:
    at.text_input(key="reviewer").set_value("Dr Ada Example")
    at.text_input(key="new_patient_id").set_value(pseudo_id)
    at.text_input(key="new_patient_name").set_value("Jane <b>Doe</b>")
    next(b for b in at.button if b.label == "Create patient").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="current_patient").value == pseudo_id
    at.file_uploader(key=widget_key("add_upload", round=0)).upload(photo.name, photo.read_bytes(), "image/jpeg")
    at.run()
    next(b for b in at.button if b.label == "Add to record").click().run()
    assert not at.exception, at.exception


def _sign_review(at: AppTest, *, agrees: bool, finding: str, grade: str, notes: str) -> None:
    at.radio[[r.label for r in at.radio].index("Do you agree with the model's result?")].set_value(agrees)
    at.radio[[r.label for r in at.radio].index("Your finding")].set_value(finding)
    at.radio[[r.label for r in at.radio].index("Grade")].set_value(grade)
    at.text_area[0].set_value(notes)
    next(b for b in at.button if b.label == "Sign").click().run()
    assert not at.exception, at.exception


def test_signed_review_survives_a_restart_and_an_amendment_keeps_it(env, clf) -> None:
    at = new_app()
    _create_patient_with_photo(at, "P-0042", CSDI / "LZ-OD.jpg")
    assert not at.error, [e.value for e in at.error]
    assert [s.value for s in at.success] == ["Right eye (OD) photograph added."]
    assert list(images(at)) == ["Original", "Grad-CAM Heatmap", "Overlay"]
    # The name is plain text, never markup.
    assert "Jane <b>Doe</b>" in [t.value for t in at.text]
    _sign_review(at, agrees=False, finding="cataract", grade="mild", notes="Early nuclear haze.")
    assert "Right eye (OD): review version 1 signed." in [s.value for s in at.success]

    # Restart: every shared resource goes (the store is closed), a new session opens the same folder.
    st.cache_resource.clear()
    at = new_app()
    at.selectbox(key="current_patient").set_value("P-0042").run()
    assert any(s.value.startswith("Signed review, version 1") for s in at.success)
    table = at.dataframe[0].value
    review = dict(zip(table.iloc[:, 0], table.iloc[:, 1], strict=True))
    # Without sign-in the typed name is kept, marked as not verified.
    assert review["Reviewer"] == "Dr Ada Example (unauthenticated)"
    assert review["Agrees with the model"] == "No"
    assert review["Finding"] == "Cataract"
    assert review["Grade"] == "Mild"
    assert review["Notes"] == "Early nuclear haze."

    # An amendment is version 2, superseding version 1, which stays as it was signed.
    at.text_input(key="reviewer").set_value("Dr Ada Example").run()
    _sign_review(at, agrees=True, finding="cataract", grade="moderate", notes="Amended after slit lamp.")
    store = RecordStore(data_dir=env)
    try:
        (exam,) = store.exams("P-0042")
        first, second = store.review_history(exam.id)
        assert (first.version, first.status, first.grade, first.agrees) == (1, "signed", "mild", False)
        assert (second.version, second.supersedes, second.grade) == (2, first.id, "moderate")
        assert second.signed_at is not None
        assert second.signed_at >= first.signed_at
        actions = [(e.action, e.object_type) for e in store.audit_trail("P-0042")]
        # Each session that opens the patient logs a view: the first one, then the one after the restart.
        assert actions == [("created", "patient"), ("viewed", "patient"), ("created", "exam"),
                           ("explained", "analysis"), ("reviewed", "review"), ("signed", "review"),
                           ("viewed", "patient"), ("reviewed", "review"), ("signed", "review")]
        # The new session opened the patient before a name was typed; no name is ever made up.
        ada, nobody = "Dr Ada Example (unauthenticated)", "unnamed user (unauthenticated)"
        assert [e.actor for e in store.audit_trail("P-0042")] == [ada] * 6 + [nobody, ada, ada]
        analysis = store.latest_analysis(exam.id)
        (ex,) = explain(clf, [store.get_image(exam.image_sha256)])
        assert analysis.prediction == ex.prediction
        np.testing.assert_allclose(analysis.cam, ex.cam, atol=1e-6)
    finally:
        store.close()
    pdf = pdf_of(at)
    assert pdf.startswith(b"%PDF-")
    store = RecordStore(data_dir=env)
    try:
        (exported,) = [e for e in store.audit_trail("P-0042") if e.action == "exported"]
        assert exported.details["eyes"] == ["OD"]
        assert exported.actor == "Dr Ada Example (unauthenticated)"
    finally:
        store.close()


def test_worklist_lists_filters_searches_and_opens(env, clf) -> None:
    store = RecordStore(data_dir=env)
    try:
        pixels = load_rgb(CSDI / "LZ-OS.jpg")
        (ex,) = explain(clf, [pixels])
        for pseudo_id in ("P-0001", "P-0002", "Q-0003"):
            store.create_patient(pseudo_id)
        exam = store.add_exam("P-0001", eye="OS", pixels=pixels)
        rs.record_analysis(store, exam.id, clf, ex, actor=who("test"))
        review = store.save_review(exam.id, author=who("Dr B"), agrees=True, finding="normal", grade="none")
        store.sign_review(review.id, signer=who("Dr B"))
        store.add_exam("P-0002", eye="OD", pixels=pixels[::2, ::2].copy())
    finally:
        store.close()
    at = new_app()
    at.switch_page("views/worklist.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["Patient ID"]) == ["P-0001", "P-0002", "Q-0003"]
    assert list(table["Review"]) == ["Signed", "Unreviewed", "Unreviewed"]
    assert list(table["Eyes"]) == [1, 1, 0]
    assert table["Left eye (OS)"][0] == f"{ex.prediction} ({ex.confidence:.0%})"
    assert table["Right eye (OD)"][1] == "—"  # photographed, not yet analysed
    assert metrics(at) == {"Unreviewed": "2", "Reviewed, not signed": "0", "Signed": "1"}

    at.selectbox(key="worklist_status").set_value("signed").run()
    assert list(at.dataframe[0].value["Patient ID"]) == ["P-0001"]
    at.selectbox(key="worklist_status").set_value("all")
    at.text_input(key="worklist_search").set_value("q-").run()
    assert list(at.dataframe[0].value["Patient ID"]) == ["Q-0003"]
    at.text_input(key="worklist_search").set_value("").run()
    at.selectbox(key="worklist_open").set_value("P-0001")
    next(b for b in at.button if b.label == "Open in Review").click().run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader][:2] == ["Patient P-0001", "Left eye (OS)"]
    assert any(s.value.startswith("Signed review, version 1") for s in at.success)


def test_batch_page_table_matches_the_engine_and_gives_a_csv(env, clf, tmp_path) -> None:
    names = ["LZ-OD.jpg", "LZ-OS.jpg", "HAY1.jpg"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    want = {Path(item.file).name: item for item in explain_files(clf, [CSDI / n for n in names] + [bad])}
    at = new_app()
    at.switch_page("views/batch.py").run()
    uploader = at.file_uploader(key="batch_uploads")
    for name in names:
        uploader.upload(name, (CSDI / name).read_bytes(), "image/jpeg")
    uploader.upload("broken.jpg", bad.read_bytes(), "image/jpeg")
    at.run()
    next(b for b in at.button if b.label == "Run batch").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["File"]) == [*names, "broken.jpg"]
    for i, name in enumerate(names):
        ex = want[name].explanation
        assert table["Prediction"][i] == ex.prediction
        assert table["Confidence"][i] == pytest.approx(ex.confidence, abs=1e-9)
    assert table["Error"][3] == want["broken.jpg"].error
    assert table["Error"][3]
    assert len(at.get("image")) == 3  # the gallery: one overlay per readable photograph
    (button,) = at.get("download_button")
    rows = list(csv.DictReader(io.StringIO(RecordingMediaFileManager.latest.read(button.proto.url).decode())))
    assert [r["file"] for r in rows] == [*names, "broken.jpg"]
    assert float(rows[0]["confidence"]) == pytest.approx(want[names[0]].explanation.confidence, abs=1e-6)
    assert rows[3]["error"]
    assert not rows[3]["prediction"]
    # The temporary copies of the uploads are gone from the data folder.
    assert [p for p in env.rglob("*") if p.is_file() and not p.name.startswith("records.sqlite3")] == []


def test_batch_page_reads_a_folder_inside_the_data_folder_only(env, clf) -> None:
    folder = env / "screening" / "day1"
    folder.mkdir(parents=True)
    for name in ("LZ-OD.jpg", "LZ-OS.jpg"):
        (folder / name).write_bytes((CSDI / name).read_bytes())
    at = new_app()
    at.switch_page("views/batch.py").run()
    at.radio(key="batch_source").set_value("folder").run()
    at.text_input(key="batch_folder").set_value("../").run()
    assert [e.value for e in at.error] == [OUTSIDE_DATA]
    assert next(b for b in at.button if b.label == "Run batch").disabled
    at.text_input(key="batch_folder").set_value("screening/nowhere").run()
    assert [e.value for e in at.error] == [MISSING_FOLDER]
    at.text_input(key="batch_folder").set_value("screening").run()
    assert not at.error
    next(b for b in at.button if b.label == "Run batch").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["File"]) == ["day1/LZ-OD.jpg", "day1/LZ-OS.jpg"]
    want = [item.explanation.prediction for item in explain_files(clf, sorted(folder.iterdir()))]
    assert list(table["Prediction"]) == want


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_model_page_shows_the_card_and_refuses_a_hostile_checkpoint(env, clf, tmp_path) -> None:
    at = new_app()
    at.switch_page("views/model.py").run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "test\\-b0"
    assert clf.weights_sha256 in [c.value for c in at.code]
    metrics_table = at.dataframe[1].value
    assert list(metrics_table["95% interval"]) == ["0.400 – 0.600"]

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model_state_dict": _Hostile(marker)}, buffer)
    at.file_uploader(key="model_upload").upload("evil.pt", buffer.getvalue(), "application/octet-stream")
    at.run()
    next(b for b in at.button if b.label == "Load the uploaded checkpoint").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1
    assert "pickled Python objects" in at.error[0].value
    assert not marker.exists()
    assert at.subheader[0].value == "test\\-b0"  # the session keeps its model

    # A genuine checkpoint uploads and becomes this session's model.
    from models import save_checkpoint

    other = tmp_path / "other.pt"
    sha = save_checkpoint(other, seeded_model(1), class_names=("Cataract", "Normal"), card={"name": "other-b0"})
    at.file_uploader(key="model_upload").clear()
    at.run()
    at.file_uploader(key="model_upload").upload("other.pt", other.read_bytes(), "application/octet-stream")
    at.run()
    next(b for b in at.button if b.label == "Load the uploaded checkpoint").click().run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "other\\-b0"
    assert sha in [c.value for c in at.code]


def test_a_missing_model_is_said_plainly_and_nothing_is_faked(env, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(tmp_path / "absent.pt"))
    at = upload_quick(new_app(), "DLY-OD.jpg", (CSDI / "DLY-OD.jpg").read_bytes())
    assert [e.value for e in at.error] == [
        "The model file configured for this dashboard cannot be found. "
        "Choose or upload a checkpoint on the Model page."]
    assert not at.metric
    assert not at.get("download_button")
    assert list(images(at)) == ["Original"]


def test_two_sessions_explaining_at_once_each_get_their_own_result(env, clf) -> None:
    paths = [CSDI / "DLY-OD.jpg", CSDI / "HAY2.jpg"]
    wants = [expected(clf, p)[1] for p in paths]
    assert wants[0].probabilities != wants[1].probabilities
    apps = [new_app(), new_app()]
    for at, path in zip(apps, paths, strict=True):
        at.file_uploader(key="quick_upload").upload(path.name, path.read_bytes(), "image/jpeg")
    from dashboard import resources

    resources.map_cache().clear()  # both sessions must really run the model, at the same time
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(at: AppTest) -> None:
        try:
            barrier.wait()
            at.run()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(at,)) for at in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for at, want in zip(apps, wants, strict=True):
        assert not at.exception, at.exception
        got = metrics(at)
        assert got["Prediction"] == want.prediction
        for name, p in want.probabilities.items():
            assert got[f"P({name})"] == f"{p:.1%}"


def test_everything_held_on_a_patient_downloads_as_one_archive(env, clf) -> None:
    # The patient's right of access from the screen: the same content as `cataract-cam records export`.
    at = new_app()
    _create_patient_with_photo(at, "P-0300", CSDI / "LZ-OS.jpg")
    _sign_review(at, agrees=True, finding="normal", grade="none", notes="Clear lens.")
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Download everything held on this patient"]
    manager = RecordingMediaFileManager.latest
    archive = zipfile.ZipFile(io.BytesIO(manager.read(manager.execute_deferred(button.proto.deferred_file_id))))
    store = RecordStore(data_dir=env)
    try:
        (exam,) = store.exams("P-0300")
        names = set(archive.namelist())
        assert {"patient.json", "report.pdf", f"images/{exam.image_sha256}.png"} <= names
        assert any(n.startswith("maps/analysis-") for n in names)
        document = json.loads(archive.read("patient.json"))
        assert document["patient"]["pseudo_id"] == "P-0300"
        assert document["patient"]["name"] == "Jane <b>Doe</b>"
        assert [r["notes"] for r in document["reviews"]] == ["Clear lens."]
        assert archive.read("report.pdf").startswith(b"%PDF-")
        assert sha256_bytes(archive.read(f"images/{exam.image_sha256}.png")) == exam.image_sha256
        # The export itself is in the trail, by whoever pressed the button.
        (exported,) = [e for e in store.audit_trail("P-0300") if e.object_type == "patient_export"]
        assert exported.actor == "Dr Ada Example (unauthenticated)"
    finally:
        store.close()
