"""DICOM objects from a signed exam: valid by dciodvfy, values as given, identity as the rules say."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pydicom import dcmread

from components.interop.dicom_files import dicom_source, read_dicom_files, write_objects
from components.interop.dicom_objects import (
    ENCAPSULATED_PDF,
    SECONDARY_CAPTURE,
    build_objects,
    build_sr,
    person_name,
    read_sr,
)
from components.interop.exam import ExamError, EyeResult, ModelIdentity, Patient, SignedExam
from components.screening.decision import decide
from tests.interop_support import PDF, dciodvfy, eye_photograph, signed_exam


@pytest.mark.parametrize("with_source", [False, True], ids=["from-files", "from-dicom"])
@pytest.mark.parametrize("organization", ["Eye Clinic", None], ids=["verified", "unverified"])
def test_every_object_passes_dciodvfy(tmp_path, with_source, organization):
    exam = signed_exam(source=eye_photograph("OD") if with_source else None, organization=organization)
    objects = build_objects(exam)
    assert [o.SOPClassUID for o in objects.all()] == [SECONDARY_CAPTURE] * 2 + [ENCAPSULATED_PDF,
                                                                                "1.2.840.10008.5.1.4.1.1.88.33"]
    for i, ds in enumerate(objects.all()):
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        errors, warnings = dciodvfy(path)
        assert errors == [], (ds.SOPClassUID, errors)
        # The only warnings: no Study Time/ID for DICOMDIR when the record has none, and the
        # private coding scheme, which dciodvfy does not know.
        assert all("DICOMDIR" in w or "99CATCAM" in w for w in warnings), warnings
    assert objects.sr.VerificationFlag == ("VERIFIED" if organization else "UNVERIFIED")


def test_sr_values_equal_the_inputs_and_the_one_decision():
    exam = signed_exam()
    values = read_sr(build_objects(exam).sr)
    assert set(values) == {"OD", "OS"}
    for eye in exam.eyes:
        got = values[eye.eye]
        expected = decide(eye.p, eye.threshold, band=eye.band, attention_verdict=eye.attention_verdict, eye=eye.eye)
        assert got["p"] == eye.p
        assert got["threshold"] == eye.threshold
        assert got["model_finding"] == expected.finding
        assert got["indeterminate"] is expected.indeterminate
        assert got["attention_verdict"] == eye.attention_verdict
        assert got["agrees"] is eye.agrees
        assert got["clinician_finding"] == eye.clinician_finding
    # 0.4375 lies within 0.1 of the threshold 0.5: indeterminate; 0.8125 does not.
    assert values["OS"]["indeterminate"] is True
    assert values["OD"]["indeterminate"] is False
    assert values["OD"]["model_finding"] == "cataract_suspected"
    assert values["OS"]["model_finding"] == "no_cataract_detected"


def test_sr_names_the_algorithm_and_references_the_source():
    source = eye_photograph("OD")
    exam = signed_exam(source=source)
    objects = build_objects(exam)
    values = read_sr(objects.sr)
    for eye in ("OD", "OS"):
        assert values[eye]["algorithm_name"] == "cataract_b0_demo"
        assert values[eye]["algorithm_version"] == "1.2"
        assert values[eye]["algorithm_parameters"] == "weights SHA-256 " + "ab" * 32
    assert values["OD"]["source_sop_instance_uid"] == source.SOPInstanceUID
    # Without a DICOM photograph the OS eye is referenced through its Secondary Capture.
    os_capture = next(c for c in objects.captures if c.ImageLaterality == "L")
    assert values["OS"]["source_sop_instance_uid"] == os_capture.SOPInstanceUID
    od_capture = next(c for c in objects.captures if c.ImageLaterality == "R")
    assert od_capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert objects.pdf.SourceInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_identity_from_the_dicom_source():
    source = eye_photograph("OD", patient_id="MRN-123")
    objects = build_objects(signed_exam(source=source))
    for ds in objects.all():
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == "MRN-123"
        assert str(ds.PatientName) == "Test^Eye"
        assert ds.AccessionNumber == "ACC1"
        assert ds.StudyID == "S1"
        assert ds.PatientBirthDate == "19500102"


def test_identity_from_the_record_invents_nothing():
    exam = signed_exam()
    exam = dataclasses.replace(exam, patient=Patient("PSEUDO-9"), exam_date=None)
    for ds in build_objects(exam).all():
        assert ds.StudyInstanceUID == exam.study_uid
        assert ds.PatientID == "PSEUDO-9"
        assert (str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex, ds.StudyDate) == ("", "", "", "")
        assert ds.AccessionNumber == ""
        assert ds.StudyID == ""


def test_record_identity_fields_are_carried():
    objects = build_objects(signed_exam())
    for ds in objects.all():
        assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
            "PSEUDO-7", "Jane Roe^", "19500102", "F")
        assert ds.StudyDate == "20261130"


def test_same_signed_review_gives_the_same_uids_and_a_new_version_new_ones():
    exam = signed_exam()
    first, again = build_objects(exam), build_objects(exam)
    uids = [d.SOPInstanceUID for d in first.all()]
    assert uids == [d.SOPInstanceUID for d in again.all()]
    assert len(set(uids)) == len(uids)
    v2 = build_objects(dataclasses.replace(exam, review_version=2))
    assert not set(uids) & {d.SOPInstanceUID for d in v2.all()}
    # The series stay: a new version joins the same series.
    assert [d.SeriesInstanceUID for d in first.all()] == [d.SeriesInstanceUID for d in v2.all()]
    other = build_objects(dataclasses.replace(exam, exam_key="exam-0002"))
    assert not set(uids) & {d.SOPInstanceUID for d in other.all()}


def test_capture_holds_the_panels_and_pdf_the_report(tmp_path):
    exam = signed_exam()
    objects = build_objects(exam)
    od = next(c for c in objects.captures if c.ImageLaterality == "R")
    path = tmp_path / "sc.dcm"
    od.save_as(path, enforce_file_format=True)
    back = dcmread(path)
    expected = next(e for e in exam.eyes if e.eye == "OD").panels
    assert np.array_equal(back.pixel_array, expected)
    pdf = objects.pdf
    assert pdf.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength] == PDF
    assert pdf.InstanceNumber == exam.review_version


def test_an_eye_without_a_result_is_exported_as_such():
    exam = signed_exam()
    ungradable = EyeResult("OS", None, 0.5, gradable=False)
    exam = dataclasses.replace(exam, eyes=(exam.eyes[0], ungradable))
    values = read_sr(build_sr(exam))
    assert {k: v for k, v in values["OS"].items() if not k.startswith("algorithm")} == {
        "threshold": 0.5, "model_finding": "ungradable"}


def test_the_sr_shows_the_signature_with_its_name_time_and_meaning():
    exam = dataclasses.replace(signed_exam(), signer="Dr A. Reviewer\x1b(B <https://idp|dr-a>")
    sr = build_sr(exam)
    comments = [item for item in sr.ContentSequence
                if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert [c.TextValue for c in comments] == [
        f"Electronically signed by Dr A. Reviewer (B <https://idp|dr-a> on "
        f"{exam.signed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC. Meaning of the signature: Reviewed and approved."]


def test_person_name_keeps_the_name_whole():
    assert person_name("Dr. A. Reviewer") == "Dr. A. Reviewer^"
    assert person_name("Smith^John=x") == "Smith John x^"
    with pytest.raises(TypeError):
        person_name(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signer": " "}, "signer"),
        ({"review_version": 0}, "review version"),
        ({"pdf": b"not a pdf"}, "PDF"),
        ({"study_uid": None}, "study UID"),
        ({"study_uid": "1.2.abc"}, "DICOM UID"),
        ({"eyes": ()}, "at least one eye"),
    ],
)
def test_a_malformed_exam_is_refused(change, message):
    with pytest.raises(ExamError, match=message):
        dataclasses.replace(signed_exam(), **change)


def test_wrong_types_and_values_in_the_content_model():
    with pytest.raises(ExamError, match="Unknown eye"):
        EyeResult("OU", 0.5, 0.5)
    with pytest.raises(ExamError, match=r"\[0, 1\]"):
        EyeResult("OD", 1.5, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        EyeResult("OD", 0.5, 1.5)
    with pytest.raises(ExamError, match="attention verdict"):
        EyeResult("OD", 0.5, 0.5, attention_verdict="somewhere")
    with pytest.raises(TypeError, match="agreement"):
        EyeResult("OD", 0.5, 0.5, agrees="yes")  # type: ignore[arg-type]
    with pytest.raises(ExamError, match="SHA-256"):
        ModelIdentity("m", "1", "xyz")
    with pytest.raises(TypeError, match="SignedExam"):
        build_objects("exam")  # type: ignore[arg-type]
    a, b = eye_photograph("OD"), eye_photograph("OS")
    exam = signed_exam(source=a)
    with pytest.raises(ExamError, match="different studies"):
        SignedExam(**{**{f.name: getattr(exam, f.name) for f in dataclasses.fields(exam)},
                      "eyes": (exam.eyes[0], dataclasses.replace(exam.eyes[1], source=b))})


def test_objects_written_whole_and_read_back(tmp_path):
    objects = build_objects(signed_exam())
    paths = write_objects(objects.all(), tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(
        [f"SC_{c.SOPInstanceUID}.dcm" for c in objects.captures]
        + [f"PDF_{objects.pdf.SOPInstanceUID}.dcm", f"SR_{objects.sr.SOPInstanceUID}.dcm"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    (tmp_path / "out" / "notes.txt").write_text("not dicom")
    (tmp_path / "out" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    batch = read_dicom_files([tmp_path / "out", tmp_path / "missing.dcm"])
    assert sorted(d.SOPInstanceUID for d in batch.datasets) == sorted(d.SOPInstanceUID for d in objects.all())
    assert sorted((p.name, why) for p, why in batch.errors) == [
        ("broken.dcm", "The DICOM file has no SOP Instance UID or Study Instance UID."),
        ("missing.dcm", "No such file."),
        ("notes.txt", "Not a DICOM file (no DICM preamble)."),
    ]
    sr = next(d for d in batch.datasets if d.SOPInstanceUID == objects.sr.SOPInstanceUID)
    assert read_sr(sr) == read_sr(objects.sr)
    with pytest.raises(TypeError):
        read_dicom_files(str(tmp_path))  # type: ignore[arg-type]


def test_dicom_source_sniffs_the_header(tmp_path):
    photo = eye_photograph("OS")
    path = tmp_path / "eye"
    photo.save_as(path, enforce_file_format=True)
    header = dicom_source(path)
    assert header is not None
    assert header.StudyInstanceUID == photo.StudyInstanceUID
    assert "PixelData" not in header
    jpeg = tmp_path / "eye.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 200)
    assert dicom_source(jpeg) is None
    (tmp_path / "bad").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    with pytest.raises(ValueError, match="header cannot be read"):
        dicom_source(tmp_path / "bad")


def test_highdicom_reads_the_sr_as_a_tid_1500_measurement_report():
    """An independent reader: highdicom's own TID 1500 parser finds one group per eye with our values."""
    import highdicom as hd

    sr = hd.sr.ComprehensiveSR.from_dataset(build_objects(signed_exam(source=eye_photograph("OD"))).sr)
    groups = sr.content.get_image_measurement_groups()
    got = {
        str(g.finding_sites[0].laterality.value): (
            {m.name.meaning: m.value for m in g.get_measurements()},
            {q.name.meaning: q.value.meaning for q in g.get_qualitative_evaluations()},
        )
        for g in groups
    }
    assert got == {
        "24028007": ({"Probability of cataract": 0.8125, "Operating threshold": 0.5},
                     {"Model finding": "Cataract suspected", "Within the indeterminate band": "No",
                      "Attention check": "on lens", "Clinician agrees with the model": "Yes",
                      "Clinician finding": "Cataract"}),
        "7771000": ({"Probability of cataract": 0.4375, "Operating threshold": 0.5},
                    {"Model finding": "No cataract detected", "Within the indeterminate band": "Yes",
                     "Attention check": "off lens: image border", "Clinician agrees with the model": "No",
                     "Clinician finding": "Normal"}),
    }
