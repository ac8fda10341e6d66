"""Sends kept beside the records: study UIDs generated once, "not sent" until a send succeeds, audited."""

from __future__ import annotations

import dataclasses

import pytest

from components.interop.dicom_objects import build_objects
from components.interop.dicomweb import DicomWebConfig, PacsClient
from components.interop.ledger import NOT_SENT, SENT, SendLedger, send_exam
from components.records import RecordStore
from tests.interop_support import signed_exam, start_orthanc
from tests.support import who


@pytest.fixture
def records(tmp_path):
    store = RecordStore(data_dir=tmp_path / "data")
    store.create_patient("PSEUDO-7", name="Jane Roe")
    ledger = SendLedger(folder=tmp_path / "data")
    yield store, ledger
    ledger.close()
    store.close()


@pytest.fixture
def orthanc(tmp_path):
    server = start_orthanc(tmp_path / "pacs")
    yield server
    server.stop()


def test_study_uid_is_generated_once_and_kept(tmp_path, records):
    _, ledger = records
    uid = ledger.study_uid("exam-A")
    assert ledger.study_uid("exam-A") == uid
    assert ledger.study_uid("exam-B") != uid
    again = SendLedger(folder=tmp_path / "data")
    try:
        assert again.study_uid("exam-A") == uid
    finally:
        again.close()
    with pytest.raises(ValueError, match="exam key"):
        ledger.study_uid("")


def test_not_sent_until_a_send_succeeds_and_each_send_audited(records, orthanc):
    store, ledger = records
    exam = dataclasses.replace(signed_exam(), exam_key="exam-A", study_uid=ledger.study_uid("exam-A"))
    client = PacsClient(DicomWebConfig(orthanc.dicomweb, timeout=5))
    expected = [f"SC {c.SOPInstanceUID}" for c in build_objects(exam).captures] + [
        f"PDF {build_objects(exam).pdf.SOPInstanceUID}", f"SR {build_objects(exam).sr.SOPInstanceUID}"]

    orthanc.stop()
    failed = send_exam(exam, ledger, actor=who("Dr. A"), client=client, store=store)
    assert failed.status == "failed"
    assert "could not be reached" in failed.error
    assert ledger.status("exam-A", 1) == NOT_SENT
    assert store.get_patient("PSEUDO-7").name == "Jane Roe"  # the records are untouched

    orthanc.start_again()
    sent = send_exam(exam, ledger, actor=who("Dr. A"), client=client, store=store)
    assert sent.status == SENT
    assert sent.error is None
    assert ledger.status("exam-A", 1) == SENT
    assert orthanc.instance_count() == 4
    assert sorted(sent.sop_uids) == sorted(e.split()[1] for e in expected)

    resent = send_exam(exam, ledger, actor=who("Dr. A"), client=client, store=store)
    assert resent.status == SENT
    assert orthanc.instance_count() == 4

    events = [e for e in store.audit_trail("PSEUDO-7") if e.object_type == "pacs_send"]
    assert [e.details["status"] for e in events] == ["failed", SENT, SENT]
    assert all(e.action == "exported" and e.actor == "Dr. A" and e.object_id == "exam-A" for e in events)
    assert events[0].details["objects"] == expected
    assert events[0].details["error"] == failed.error
    assert events[2].details["already_present"] == 4
    assert events[1].details["to"] == f"DICOMweb 127.0.0.1:{orthanc.http_port}"
    assert [a.status for a in ledger.history("exam-A")] == ["failed", SENT, SENT]

    # A new review version is "not sent" until it is.
    assert ledger.status("exam-A", 2) == NOT_SENT
    send_exam(dataclasses.replace(exam, review_version=2), ledger, actor=who("Dr. A"), client=client)
    assert ledger.status("exam-A", 2) == SENT
    assert orthanc.instance_count() == 8


def test_send_by_dimse_is_kept_too(records, orthanc):
    _, ledger = records
    exam = dataclasses.replace(signed_exam(), exam_key="exam-D", study_uid=ledger.study_uid("exam-D"))
    attempt = send_exam(exam, ledger, actor=who("Dr. A"), dimse=f"ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    assert attempt.status == SENT
    assert attempt.target == f"DIMSE ORTHANC@127.0.0.1:{orthanc.dicom_port}"
    assert orthanc.instance_count() == 4
    with pytest.raises(ValueError, match="exactly one"):
        send_exam(exam, ledger, actor=who("Dr. A"))


def test_pull_into_record_keeps_good_photographs_and_says_why_others_were_left(records, orthanc):
    import requests

    from components.interop.case import pixels_sha256, pull_into_record
    from components.interop.dicomweb import dataset_bytes, photograph
    from tests.interop_support import eye_photograph

    store, ledger = records
    study = "1.2.826.0.1.3680043.8.498.77"
    good = eye_photograph("OS", study_uid=study)
    empty = eye_photograph("OD", seed=5, study_uid=study)
    del empty.PixelData
    no_side = eye_photograph("OD", seed=6, study_uid=study)
    del no_side.ImageLaterality
    for ds in (good, empty, no_side):
        requests.post(f"{orthanc.rest}/instances", data=dataset_bytes(ds), timeout=30).raise_for_status()
    client = PacsClient(DicomWebConfig(orthanc.dicomweb))
    outcome = pull_into_record(store, ledger, client, study, "PSEUDO-7", actor=who("Dr. A"))
    (exam,) = outcome.exams
    assert (exam.eye, str(exam.exam_date)) == ("OS", "2026-11-30")
    assert sorted(r.split(": ", 1)[1] for r in outcome.skipped) == [
        "The DICOM file has no pixel data: it is incomplete or not an image.",
        "the DICOM says no laterality (R or L).",
    ]
    kept = ledger.source(pixels_sha256(store.get_image(exam.image_sha256)))
    assert kept is not None
    assert kept.SOPInstanceUID == good.SOPInstanceUID
    assert "PixelData" not in kept
    assert pixels_sha256(photograph(good).pixels) == pixels_sha256(store.get_image(exam.image_sha256))
