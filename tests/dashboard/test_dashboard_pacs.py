"""The Review page and a real Orthanc: sign, "Send to PACS", PACS down, retry, no duplicates, FHIR download."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from components.interop.dicomweb import DicomWebConfig, PacsClient
from components.interop.fhir import bundle_values
from components.records import RecordStore
from dashboard.keys import widget_key
from tests.dashboard.support import RecordingMediaFileManager, click, new_app
from tests.interop_support import start_orthanc

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture
def orthanc(tmp_path, monkeypatch):
    server = start_orthanc(tmp_path / "pacs")
    monkeypatch.setenv("CATARACT_CAM_DICOMWEB_URL", server.dicomweb)
    monkeypatch.setenv("CATARACT_CAM_ORGANIZATION", "Eye Clinic")
    yield server
    server.stop()


def _patient_signed(at, photo) -> None:
    at.text_input(key="reviewer").set_value("Dr Ada Example")
    at.text_input(key="new_patient_id").set_value("P-0077")
    click(at, "Create patient")
    at.file_uploader(key=widget_key("add_upload", round=0)).upload(photo.name, photo.read_bytes(), "image/png")
    at.run()
    click(at, "Add to record")
    radios = [r.label for r in at.radio]
    at.radio[radios.index("Do you agree with the model's result?")].set_value(False)
    at.radio[radios.index("Your finding")].set_value("cataract")
    at.radio[radios.index("Grade")].set_value("mild")
    click(at, "Sign")


def _status(at) -> str:
    (line,) = [m.value for m in at.markdown if m.value.startswith("**Clinic systems**")]
    return line.rsplit("PACS: ", 1)[1]


def test_send_to_pacs_after_signing(env, clf, orthanc, tmp_path, images):
    photo = tmp_path / "right_OD.png"
    Image.fromarray(images[3]).save(photo)
    at = new_app()
    _patient_signed(at, photo)
    assert _status(at) == "not sent"
    send = next(b for b in at.button if b.label == "Send to PACS")
    assert not send.disabled

    # The PACS is down: one clear message, the exam stays, marked not sent.
    orthanc.stop()
    click(at, "Send to PACS")
    (error,) = [e.value for e in at.error]
    assert error.startswith(f"Not sent. The PACS at 127.0.0.1:{orthanc.http_port} could not be reached")
    assert error.endswith("nothing local was lost and it can be tried again.")
    assert _status(at) == "not sent"
    assert at.selectbox(key="current_patient").value == "P-0077"

    # Back up: the retry sends the SR, the Secondary Capture and the PDF into one study.
    orthanc.start_again()
    click(at, "Send to PACS")
    assert "Sent to the PACS: 3 objects (report, evidence, structured results)." in [s.value for s in at.success]
    assert _status(at) == "sent"
    assert orthanc.instance_count() == 3
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    (study,) = client.search_studies(modalities=("SR",))
    listed = client.instances(study.study_uid)
    assert sorted(c for _, _, c in listed) == sorted(["1.2.840.10008.5.1.4.1.1.7",
                                                      "1.2.840.10008.5.1.4.1.1.104.1", SR_CLASS])

    # The SR holds the record's values.
    from components.interop.dicom_objects import read_sr

    series, sop, _ = next(x for x in listed if x[2] == SR_CLASS)
    values = read_sr(client.retrieve(study.study_uid, series, sop))["OD"]
    store = RecordStore(data_dir=env)
    try:
        (exam,) = store.exams("P-0077")
        analysis, review = store.latest_analysis(exam.id), store.latest_review(exam.id)
        assert values["p"] == analysis.probabilities["Cataract"]
        assert values["agrees"] is review.agrees is False
        assert values["clinician_finding"] == review.finding == "cataract"
        events = [e for e in store.audit_trail("P-0077") if e.object_type == "pacs_send"]
        assert [e.details["status"] for e in events] == ["failed", "sent"]
        assert len(events[1].details["objects"]) == 3
    finally:
        store.close()

    # Sending again adds nothing.
    click(at, "Send to PACS")
    assert orthanc.instance_count() == 3

    # The FHIR Bundle of the same signed case.
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Download FHIR bundle"]
    manager = RecordingMediaFileManager.latest
    bundle = json.loads(manager.read(manager.execute_deferred(button.proto.deferred_file_id)))
    fhir = bundle_values(bundle)["OD"]
    assert fhir["p"] == values["p"]
    assert fhir["clinician_finding"] == "cataract"
    assert np.isclose(fhir["threshold"], clf.threshold)


def test_send_needs_a_signature_and_a_pacs(env, clf, tmp_path, images, monkeypatch):
    monkeypatch.delenv("CATARACT_CAM_DICOMWEB_URL", raising=False)
    photo = tmp_path / "right_OD.png"
    Image.fromarray(images[3]).save(photo)
    at = new_app()
    at.text_input(key="reviewer").set_value("Dr Ada Example")
    at.text_input(key="new_patient_id").set_value("P-0078")
    click(at, "Create patient")
    at.file_uploader(key=widget_key("add_upload", round=0)).upload(photo.name, photo.read_bytes(), "image/png")
    at.run()
    click(at, "Add to record")
    send = next(b for b in at.button if b.label == "Send to PACS")
    assert send.disabled
    assert not [b for b in at.get("download_button") if b.proto.label == "Download FHIR bundle"]


def test_round_trip_through_the_dashboard(env, clf, orthanc):
    """A photograph in the PACS is found, pulled into a record, explained, signed and sent back to its study."""
    import requests

    from components.interop.dicom_objects import read_sr
    from components.interop.dicomweb import dataset_bytes
    from tests.dashboard.support import page
    from tests.interop_support import eye_photograph

    source = eye_photograph("OD", patient_id="MRN-31", size=160)
    requests.post(f"{orthanc.rest}/instances", data=dataset_bytes(source), timeout=30).raise_for_status()
    store = RecordStore(data_dir=env)
    try:
        store.create_patient("P-0200")
    finally:
        store.close()

    at = page("pacs")
    at.text_input(key="reviewer").set_value("Dr Ada Example")
    at.text_input[[t.label for t in at.text_input].index("Patient ID")].set_value("MRN-31")
    click(at, "Search")
    assert at.dataframe[0].value["Patient ID"].tolist() == ["MRN-31"]
    at.selectbox(key="pacs_patient").set_value("P-0200").run()
    click(at, "Pull into the patient's record")
    assert [s.value for s in at.success] == [
        "1 photograph(s) added to the record; open the Review page to explain and sign them."]

    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="current_patient").value == "P-0200"
    radios = [r.label for r in at.radio]
    at.radio[radios.index("Do you agree with the model's result?")].set_value(True)
    at.radio[radios.index("Your finding")].set_value("normal")
    at.radio[radios.index("Grade")].set_value("none")
    click(at, "Sign")
    click(at, "Send to PACS")
    assert _status(at) == "sent"

    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    listed = client.instances(source.StudyInstanceUID)  # the results joined the photograph's own study
    assert len(listed) == 4
    series, sop, _ = next(x for x in listed if x[2] == SR_CLASS)
    sr = client.retrieve(source.StudyInstanceUID, series, sop)
    assert (sr.PatientID, str(sr.PatientName), sr.AccessionNumber) == ("MRN-31", "Test^Eye", "ACC1")
    values = read_sr(sr)["OD"]
    assert values["source_sop_instance_uid"] == source.SOPInstanceUID
    assert (values["agrees"], values["clinician_finding"]) == (True, "normal")
