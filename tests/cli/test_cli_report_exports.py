"""``cataract-cam report --dicom-out DIR --fhir FILE``: the report's results as DICOM and FHIR, valid and equal."""

from __future__ import annotations

from PIL import Image

from components.interop.dicom_files import read_dicom_files
from components.interop.dicom_objects import ENCAPSULATED_PDF, read_sr
from components.interop.fhir import bundle_values
from tests.interop_support import dciodvfy, eye_photograph


def _objects(folder):
    batch = read_dicom_files([folder])
    assert batch.errors == ()
    return {str(d.SOPClassUID): d for d in batch.datasets}, batch


def test_report_exports_from_image_files(tmp_path, run_cli, mlp_checkpoint, images):
    od, os_ = tmp_path / "right.png", tmp_path / "left.png"
    Image.fromarray(images[0]).save(od)
    Image.fromarray(images[1]).save(os_)
    args = ["report", "--patient-id", "P-0042", "--od", od, "--os", os_, "--reviewer", "Dr. Q",
            "--organization", "Eye Clinic", "--model", mlp_checkpoint]
    code, _out, err = run_cli([*args, "--out", tmp_path / "r.pdf", "--dicom-out", tmp_path / "dicom",
                               "--fhir", tmp_path / "bundle.json"])
    assert code == 0, err
    by_class, batch = _objects(tmp_path / "dicom")
    assert len(batch.datasets) == 4  # SR, two Secondary Captures, the PDF
    for path in batch.paths:
        errors, _warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
    pdf = by_class[ENCAPSULATED_PDF]
    assert pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength] == (tmp_path / "r.pdf").read_bytes()
    sr = read_sr(by_class["1.2.840.10008.5.1.4.1.1.88.33"])
    fhir = bundle_values((tmp_path / "bundle.json").read_text())
    for eye in ("OD", "OS"):
        assert sr[eye]["p"] == fhir[eye]["p"]
        assert sr[eye]["model_finding"] == fhir[eye]["model_finding"]
    assert {d.PatientID for d in batch.datasets} == {"P-0042"}

    # The same photographs again: the same study and the same SOP Instance UIDs.
    code, _out, err = run_cli([*args, "--out", tmp_path / "r2.pdf", "--dicom-out", tmp_path / "again"])
    assert code == 0, err
    _, again = _objects(tmp_path / "again")
    assert sorted(d.SOPInstanceUID for d in again.datasets) == sorted(d.SOPInstanceUID for d in batch.datasets)


def test_report_exports_take_identity_from_a_dicom_photograph(tmp_path, run_cli, mlp_checkpoint):
    photo = eye_photograph("OD", patient_id="MRN-55")
    path = tmp_path / "right.dcm"
    photo.save_as(path, enforce_file_format=True)
    code, _out, err = run_cli(["report", "--patient-id", "P-1", "--od", path, "--reviewer", "Dr. Q",
                               "--out", tmp_path / "r.pdf", "--dicom-out", tmp_path / "dicom",
                               "--model", mlp_checkpoint])
    assert code == 0, err
    by_class, batch = _objects(tmp_path / "dicom")
    assert {d.StudyInstanceUID for d in batch.datasets} == {photo.StudyInstanceUID}
    assert {d.PatientID for d in batch.datasets} == {"MRN-55"}
    assert {d.AccessionNumber for d in batch.datasets} == {"ACC1"}
    assert read_sr(by_class["1.2.840.10008.5.1.4.1.1.88.33"])["OD"]["source_sop_instance_uid"] == photo.SOPInstanceUID


def test_report_exports_need_a_reviewer(tmp_path, run_cli, mlp_checkpoint, images):
    od = tmp_path / "right.png"
    Image.fromarray(images[0]).save(od)
    code, _out, err = run_cli(["report", "--patient-id", "P-1", "--od", od, "--out", tmp_path / "r.pdf",
                               "--fhir", tmp_path / "b.json", "--model", mlp_checkpoint])
    assert code == 2
    assert err == "cataract-cam: error: --dicom-out and --fhir say who signed the results: give --reviewer.\n"
    assert not (tmp_path / "b.json").exists()
    assert not (tmp_path / "r.pdf").exists()  # refused before anything was written
