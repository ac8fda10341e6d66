"""A real Orthanc (Debian's, started here): pull a photograph, explain it, send the results, and faults."""

from __future__ import annotations

import dataclasses
import http.server
import io
import socket
import threading
from datetime import datetime

import numpy as np
import pytest
import requests
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless

from components.base import config as settings
from components.explanation.cam import explain
from components.imaging.loading import ImageError
from components.interop.assemble import eye_result
from components.interop.dicom_files import write_objects
from components.interop.dicom_objects import ENCAPSULATED_PDF, SECONDARY_CAPTURE, build_objects, read_sr
from components.interop.dicomweb import DicomWebConfig, PacsClient, PacsError, dataset_bytes, photograph
from components.interop.dimse import c_store, parse_target
from components.interop.exam import ModelIdentity, Patient, SignedExam
from components.interop.transfer import pull_study, send_files
from components.lens.attention import check as check_attention
from components.report import EyeFindings, ModelInfo, PatientInfo, ReviewInfo, build_report
from tests.interop_support import eye_photograph, free_port, signed_exam, start_orthanc

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture
def orthanc(tmp_path):
    server = start_orthanc(tmp_path)
    yield server
    server.stop()


def _upload(server, ds) -> None:
    """Store a test photograph through Orthanc's own REST API, not through the code under test."""
    response = requests.post(f"{server.rest}/instances", data=dataset_bytes(ds), timeout=30)
    assert response.ok, response.text


def _pull_explain_sign(client, classifier, study_uid):
    """Pull the study's photographs, explain them, review and sign: the exam as the clinic would make it."""
    pulled = client.pull_photographs(study_uid)
    eyes, findings = [], []
    for ds in sorted(pulled, key=lambda d: d.ImageLaterality, reverse=True):  # R before L
        decoded = photograph(ds)
        ex = explain(classifier, [decoded.pixels])[0]
        attention = check_attention(decoded.pixels, ex.cam)
        agrees = decoded.laterality == "OD"
        eyes.append(eye_result(decoded.laterality, decoded.pixels, ex, threshold=classifier.threshold,
                               attention=attention, agrees=agrees, clinician_finding="normal", source=ds))
        findings.append(EyeFindings(eye=decoded.laterality, image=decoded.pixels, explanation=ex,
                                    review=ReviewInfo("Dr. A. Reviewer", agrees, "normal", None,
                                                      signed_at=datetime(2026, 11, 30, 9, 30))))
    model = ModelInfo.from_classifier(classifier)
    pdf = build_report(PatientInfo(str(pulled[0].PatientID)), findings, model, report_id="0" * 32,
                       generated_at=datetime(2026, 11, 30, 9, 30).astimezone())
    exam = SignedExam(exam_key="exam-rt", patient=Patient(str(pulled[0].PatientID)), eyes=tuple(eyes),
                      signer="Dr. A. Reviewer", signed_at=datetime(2026, 11, 30, 9, 30), review_version=1,
                      model=ModelIdentity(model.name, model.version, "cd" * 32), pdf=pdf, organization="Eye Clinic")
    return pulled, exam


def test_round_trip_through_orthanc(orthanc, classifier):
    study = "1.2.826.0.1.3680043.8.498.1"
    od, os_ = eye_photograph("OD", seed=1, study_uid=study), eye_photograph("OS", seed=2, study_uid=study)
    _upload(orthanc, od)
    _upload(orthanc, os_)
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))

    # 1. QIDO finds the study (by patient and modality), WADO pulls the photographs whole.
    found = client.search_studies(patient_id="PSEUDO-7", modalities=("OP",))
    assert [s.study_uid for s in found] == [study]
    assert found[0].modalities == ("OP",)
    assert client.search_studies(patient_id="SOMEONE-ELSE") == []
    assert [s.study_uid for s in client.search_studies(study_date="20261101-20261231")] == [study]
    assert client.search_studies(study_date="20250101") == []
    assert client.search_studies(modalities=("SR",)) == []  # no results yet
    pulled, exam = _pull_explain_sign(client, classifier, study)
    assert sorted(d.SOPInstanceUID for d in pulled) == sorted([od.SOPInstanceUID, os_.SOPInstanceUID])
    by_uid = {d.SOPInstanceUID: d for d in pulled}
    assert np.array_equal(photograph(by_uid[od.SOPInstanceUID]).pixels, photograph(od).pixels)

    # 2. The results go back by STOW into the same study.
    objects = build_objects(exam)
    result = client.send(objects.all())
    assert set(result.stored) == {d.SOPInstanceUID for d in objects.all()}
    assert result.already_present == ()

    # 3. QIDO lists the SR, both Secondary Captures and the PDF beside the photographs.
    listed = {sop: cls for _, sop, cls in client.instances(study)}
    for ds in objects.all():
        assert listed[ds.SOPInstanceUID] == ds.SOPClassUID
    assert sorted(listed.values()) == sorted([od.SOPClassUID] * 2 + [SECONDARY_CAPTURE] * 2
                                             + [ENCAPSULATED_PDF, COMPREHENSIVE_SR])

    # 4. WADO gives them back; the SR holds the values of the signed exam.
    sr = client.retrieve(study, objects.sr.SeriesInstanceUID, objects.sr.SOPInstanceUID)
    values = read_sr(sr)
    for eye in exam.eyes:
        got = values[eye.eye]
        assert got["p"] == eye.p
        assert got["threshold"] == classifier.threshold
        assert got["model_finding"] == eye.decision().finding
        assert got["attention_verdict"] == eye.attention_verdict
        assert got["agrees"] is eye.agrees
        assert got["clinician_finding"] == "normal"
        assert got["source_sop_instance_uid"] == eye.source.SOPInstanceUID
    pdf = client.retrieve(study, objects.pdf.SeriesInstanceUID, objects.pdf.SOPInstanceUID)
    assert pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength] == exam.pdf
    capture = objects.captures[0]
    back = client.retrieve(study, capture.SeriesInstanceUID, capture.SOPInstanceUID)
    assert np.array_equal(back.pixel_array, exam.ordered_eyes()[0].panels)

    # Now the study lists its photographs, the captures (OT), the report (DOC) and the SR.
    (listed_study,) = client.search_studies(modalities=("SR",))
    assert sorted(listed_study.modalities) == ["DOC", "OP", "OT", "SR"]

    # 5. Sending again adds nothing: the same SOP Instance UIDs, already held.
    count = orthanc.instance_count()
    assert count == 6
    again = client.send(build_objects(exam).all())
    assert again.stored == ()
    assert set(again.already_present) == set(result.stored)
    assert orthanc.instance_count() == count


def test_pacs_down_then_back(orthanc):
    client = PacsClient(DicomWebConfig(orthanc.dicomweb, timeout=5))
    exam = signed_exam()
    objects = build_objects(exam)
    orthanc.stop()
    with pytest.raises(PacsError) as caught:
        client.send(objects.all())
    message = str(caught.value)
    assert message == (f"The PACS at 127.0.0.1:{orthanc.http_port} could not be reached (down or refusing "
                       "connections) while listing the study's series; nothing local was lost and it can be "
                       "tried again.")
    assert "PSEUDO" not in message
    assert exam.study_instance_uid not in message
    # Nothing local changed, and the retry sends all of it.
    assert [d.SOPInstanceUID for d in build_objects(exam).all()] == [d.SOPInstanceUID for d in objects.all()]
    orthanc.start_again()
    result = client.send(objects.all())
    assert len(result.stored) == 4
    assert orthanc.instance_count() == 4


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_pacs_that_does_not_answer_times_out(silent_server):
    client = PacsClient(DicomWebConfig(f"http://127.0.0.1:{silent_server}/dicom-web", timeout=0.5))
    with pytest.raises(PacsError, match=r"did not answer within 0\.5 s while searching studies; nothing local"):
        client.search_studies()


def test_basic_authentication(tmp_path):
    server = start_orthanc(tmp_path, users={"reader": "s3cret"})
    try:
        wrong = PacsClient(DicomWebConfig(server.dicomweb, user="reader", password="nope"))
        with pytest.raises(PacsError, match="refused the credentials"):
            wrong.search_studies()
        right = PacsClient(DicomWebConfig(server.dicomweb, user="reader", password="s3cret"))
        assert right.search_studies() == []
        assert len(right.send([eye_photograph("OD")]).stored) == 1
    finally:
        server.stop()


@pytest.fixture
def header_recorder():
    """A real HTTP server on 127.0.0.1 that answers every QIDO with no studies and records headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_bearer_token_from_the_environment(header_recorder, monkeypatch):
    port, seen = header_recorder
    monkeypatch.setenv("CATARACT_CAM_DICOMWEB_URL", f"http://127.0.0.1:{port}/dicom-web")
    monkeypatch.setenv("CATARACT_CAM_DICOMWEB_TOKEN", "tok-123")
    config = DicomWebConfig.configured()
    assert config is not None
    assert "tok-123" not in repr(config)
    assert PacsClient(config).search_studies(modalities=("OP",)) == []
    assert seen[0]["Authorization"] == "Bearer tok-123"


def test_configuration_from_environment_and_secrets(monkeypatch):
    for name in ("URL", "USER", "PASSWORD", "TOKEN"):
        monkeypatch.delenv(f"CATARACT_CAM_DICOMWEB_{name}", raising=False)
    monkeypatch.setattr(settings, "secrets", dict)
    assert DicomWebConfig.configured() is None
    secrets = {"CATARACT_CAM_DICOMWEB_URL": "https://pacs.invalid/dicom-web",
               "CATARACT_CAM_DICOMWEB_USER": "u", "CATARACT_CAM_DICOMWEB_PASSWORD": "p"}
    monkeypatch.setattr(settings, "secrets", lambda: secrets)
    config = DicomWebConfig.configured()
    assert (config.url, config.user, config.password, config.where) == (
        "https://pacs.invalid/dicom-web", "u", "p", "pacs.invalid")
    assert "'p'" not in repr(config)
    monkeypatch.setenv("CATARACT_CAM_DICOMWEB_URL", "http://a:8042/dw")  # the environment wins
    env = DicomWebConfig.configured()
    assert env.url == "http://a:8042/dw"
    assert env.where == "a:8042"
    with pytest.raises(ValueError, match="both a user and a password"):
        DicomWebConfig("http://a/dw", user="u")
    with pytest.raises(ValueError, match="http:// or https://"):
        DicomWebConfig("ftp://a/dw")
    with pytest.raises(TypeError):
        PacsClient("http://a/dw")  # type: ignore[arg-type]


def test_photograph_without_pixels_or_with_a_broken_codestream(orthanc):
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    empty = eye_photograph("OD", study_uid="1.2.826.0.1.3680043.8.498.2")
    del empty.PixelData
    _upload(orthanc, empty)
    (pulled,) = client.pull_photographs(empty.StudyInstanceUID)
    with pytest.raises(ImageError, match=r"^The DICOM file has no pixel data: it is incomplete or not an image\.$"):
        photograph(pulled)
    j2k = eye_photograph("OS")
    j2k.file_meta.TransferSyntaxUID = JPEG2000Lossless
    j2k.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x04\x00\x00\x00\xff\x4f\xff\xd9"
    with pytest.raises(ImageError, match=r"^The DICOM pixel data is corrupt or incomplete and cannot be decoded\.$"):
        photograph(j2k)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57"],
                         ids=["jpeg-lossless-sv1", "jpeg-lossless"])
def test_jpeg_lossless_from_orthanc_decodes_exactly(orthanc, syntax):
    """No Python encoder writes JPEG Lossless; Orthanc (DCMTK) transcodes a photograph to it."""
    ds = eye_photograph("OD", seed=3)
    response = requests.post(f"{orthanc.rest}/instances", data=dataset_bytes(ds), timeout=30)
    assert response.ok, response.text
    transcoded = requests.post(f"{orthanc.rest}/instances/{response.json()['ID']}/modify",
                               json={"Transcode": syntax, "Force": True}, timeout=30)
    assert transcoded.ok, transcoded.text
    assert dcmread(io.BytesIO(transcoded.content)).file_meta.TransferSyntaxUID == syntax
    expected = np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns, 3)
    decoded = photograph(dcmread(io.BytesIO(transcoded.content)))
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert decoded.laterality == "OD"


def test_send_refuses_bad_input():
    client = PacsClient(DicomWebConfig("http://127.0.0.1:9/dicom-web"))
    with pytest.raises(ValueError, match="Nothing to send"):
        client.send([])
    with pytest.raises(TypeError):
        client.send(["x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="one study at a time"):
        client.send([eye_photograph("OD"), eye_photograph("OS")])


def test_dimse_c_store_into_orthanc(orthanc):
    objects = build_objects(signed_exam())
    target = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    assert c_store(objects.all(), target) == [d.SOPInstanceUID for d in objects.all()]
    assert orthanc.instance_count() == 4
    c_store(objects.all(), target)  # the same UIDs: Orthanc keeps one copy of each
    assert orthanc.instance_count() == 4
    study = objects.sr.StudyInstanceUID
    listed = {sop for _, sop, _ in PacsClient(DicomWebConfig(orthanc.dicomweb)).instances(study)}
    assert listed == {d.SOPInstanceUID for d in objects.all()}


def test_dimse_faults():
    assert parse_target("PACS_1@10.0.0.5:104") == dataclasses.replace(parse_target("PACS_1@10.0.0.5:104"))
    assert parse_target("PACS_1@host.example:11112").port == 11112
    for bad in ("PACS", "A@b", "WAY_TOO_LONG_AE_TITLE@h:1", "A@h:0", "A@h:70000"):
        with pytest.raises(ValueError, match="DIMSE"):
            parse_target(bad)
    with pytest.raises(PacsError, match=r"could not be reached or did not answer; nothing local was lost"):
        c_store(build_objects(signed_exam()).all(), f"NOBODY@127.0.0.1:{free_port()}", timeout=2)


def test_pull_study_into_a_folder(orthanc, tmp_path):
    study = "1.2.826.0.1.3680043.8.498.3"
    photos = [eye_photograph("OD", study_uid=study), eye_photograph("OS", seed=3, study_uid=study)]
    for ds in photos:
        _upload(orthanc, ds)
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    paths = pull_study(client, study, tmp_path / "pulled")
    assert sorted(p.name for p in paths) == sorted(f"OP_{d.SOPInstanceUID}.dcm" for d in photos)
    for ds in photos:
        back = dcmread(tmp_path / "pulled" / f"OP_{ds.SOPInstanceUID}.dcm")
        assert np.array_equal(photograph(back).pixels, photograph(ds).pixels)
    with pytest.raises(ValueError, match="no eye photographs"):
        pull_study(client, "1.2.3.4", tmp_path / "none")


def test_send_files_study_by_study(orthanc, tmp_path):
    first, second = build_objects(signed_exam()), build_objects(signed_exam())
    write_objects(first.all(), tmp_path / "a")
    write_objects(second.all(), tmp_path / "b")
    (tmp_path / "b" / "readme.txt").write_text("not DICOM")
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    summary = send_files([tmp_path / "a", tmp_path / "b"], client=client)
    assert not summary.ok
    assert [(p.name, why) for p, why in summary.bad_files] == [("readme.txt", "Not a DICOM file (no DICM preamble).")]
    expected = sorted([first.sr.StudyInstanceUID, second.sr.StudyInstanceUID])
    assert sorted(s.study_uid for s in summary.studies) == expected
    assert all(len(s.stored) == 4 and s.error is None for s in summary.studies)
    assert orthanc.instance_count() == 8
    again = send_files([tmp_path / "a"], client=client)
    assert again.ok
    assert again.studies[0].stored == ()
    assert len(again.studies[0].already_present) == 4
    orthanc.stop()
    down = send_files([tmp_path / "a"], client=client)
    assert not down.ok
    assert "could not be reached" in down.studies[0].error
    with pytest.raises(ValueError, match="exactly one"):
        send_files([tmp_path / "a"])


def test_pacs_that_drops_an_object_is_a_failed_send(tmp_path):
    # Orthanc's DICOMweb plugin answers success for an instance its Lua filter then drops.
    lua = 'function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.Modality ~= "SR"\nend\n'
    server = start_orthanc(tmp_path, lua=lua)
    try:
        client = PacsClient(DicomWebConfig(server.dicomweb))
        objects = build_objects(signed_exam())
        with pytest.raises(PacsError, match=r"refused 1 of 4 objects; nothing local was lost and it can be tried"):
            client.send(objects.all())
        assert server.instance_count() == 3
    finally:
        server.stop()
