"""The exports of a report made from files say what the report says: same p, same panels, same review."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from components.explanation.cam import explain
from components.explanation.overlay import three_panel
from components.interop.dicom_files import read_dicom_files
from components.interop.dicom_objects import build_objects, read_sr
from components.interop.exam import ExamError, new_study_uid
from components.interop.fhir import build_bundle, bundle_values
from components.interop.from_report import (
    exam_key_for,
    files_study_uid,
    signed_exam_from_report,
    write_exports,
)
from components.lens.attention import AttentionError, AttentionResult
from components.report import EyeFindings, ModelInfo, PatientInfo, ReviewInfo, build_report
from components.workflows.review import attention_for
from tests.interop_support import eye_photograph


def _findings(classifier, images):
    explanations = explain(classifier, images[:2])
    eyes = []
    for eye, image, ex in zip(("OD", "OS"), images[:2], explanations, strict=True):
        review = ReviewInfo("Dr. B", eye == "OD", "cataract" if eye == "OD" else "normal", "mild")
        eyes.append(EyeFindings(eye, image, ex, exam_date=date(2026, 11, 2), modality="external",
                                attention=attention_for(image, ex, "external"), review=review,
                                colormap="turbo", alpha=0.4))
    return eyes


def test_exports_carry_the_report_values(classifier, images):
    eyes = _findings(classifier, images)
    patient = PatientInfo("P-0042")
    model = ModelInfo.from_classifier(classifier)
    model = ModelInfo(model.name, model.version, "ef" * 32, model.threshold, model.is_demo, model.card)
    pdf = build_report(patient, eyes, model, report_id="1" * 32, generated_at=datetime(2026, 11, 2, 10).astimezone())
    exam = signed_exam_from_report(patient, eyes, model, pdf, signer="Dr. B", signed_at=datetime(2026, 11, 2, 10),
                                   study_uid=new_study_uid())
    by_eye = {e.eye: e for e in exam.eyes}
    values, fhir = read_sr(build_objects(exam).sr), bundle_values(build_bundle(exam))
    for finding in eyes:
        p = finding.explanation.probabilities["Cataract"]
        assert by_eye[finding.eye].p == p
        assert values[finding.eye]["p"] == p
        assert fhir[finding.eye]["p"] == p
        assert values[finding.eye]["threshold"] == classifier.threshold
        assert values[finding.eye]["attention_verdict"] == finding.attention.verdict
        assert values[finding.eye]["agrees"] is finding.review.agrees
        assert values[finding.eye]["clinician_finding"] == finding.review.finding
        expected = three_panel(finding.image, finding.explanation.cam, alpha=0.4, colormap="turbo")
        assert np.array_equal(by_eye[finding.eye].panels, expected)
    assert exam.exam_date == date(2026, 11, 2)
    assert exam.pdf == pdf


def test_identity_from_a_dicom_input_and_a_stable_key(classifier, images):
    eyes = _findings(classifier, images)
    model = ModelInfo("m", "1", "ef" * 32, 0.5, False, {})
    source = eye_photograph("OD")
    exam = signed_exam_from_report(PatientInfo("P-1"), eyes, model, b"%PDF-1.4\n", signer="Dr. B",
                                   signed_at=datetime(2026, 11, 2, 10), sources={"OD": source})
    assert exam.study_instance_uid == source.StudyInstanceUID
    assert exam.exam_key == exam_key_for("P-1", eyes) == exam_key_for("P-1", list(reversed(eyes)))
    assert exam_key_for("P-2", eyes) != exam.exam_key
    with pytest.raises(ExamError, match="study UID"):
        signed_exam_from_report(PatientInfo("P-1"), eyes, model, b"%PDF-1.4\n", signer="Dr. B",
                                signed_at=datetime(2026, 11, 2, 10))
    with pytest.raises(ExamError, match="SHA-256"):
        signed_exam_from_report(PatientInfo("P-1"), eyes, ModelInfo("m", "1", "", 0.5, False, {}), b"%PDF-1.4\n",
                                signer="Dr. B", signed_at=datetime(2026, 11, 2, 10), study_uid=new_study_uid())


def test_ungradable_eye_and_fundus_words():
    unreadable = EyeFindings("OS", None, None, gradable=False, ungradable_reason="The image file could not be read.")
    exam = signed_exam_from_report(PatientInfo("P-1"), [unreadable], ModelInfo("m", "1", "ef" * 32, 0.5, False, {}),
                                   b"%PDF-1.4\n", signer="Dr. B", signed_at=datetime(2026, 11, 2),
                                   study_uid=new_study_uid())
    assert read_sr(build_objects(exam).sr)["OS"]["model_finding"] == "ungradable"
    assert build_objects(exam).captures == ()
    # The check's result travels as itself: read back from its plain form, its verdict is the code.
    fundus = AttentionResult.from_dict({"verdict": "on lens", "modality": "fundus", "figures": {}})
    assert (fundus.verdict, fundus.label) == ("on lens", "inside the fundus")
    with pytest.raises(AttentionError, match="Unknown attention verdict"):
        AttentionResult.from_dict({"verdict": "somewhere"})


def test_write_exports_from_files(tmp_path, classifier, images):
    eyes = _findings(classifier, images)
    model = ModelInfo("m", "1", "ef" * 32, 0.5, False, {})
    key = exam_key_for("P-1", eyes)
    exam = signed_exam_from_report(PatientInfo("P-1"), eyes, model, b"%PDF-1.4\n", signer="Dr. B",
                                   signed_at=datetime(2026, 11, 2, 10), study_uid=files_study_uid(key))
    written = write_exports(exam, dicom_out=tmp_path / "dicom", fhir_out=tmp_path / "bundle.json")
    assert len(written) == 5
    batch = read_dicom_files([tmp_path / "dicom"])
    assert {d.StudyInstanceUID for d in batch.datasets} == {files_study_uid(key)}
    assert files_study_uid(key) == files_study_uid(exam_key_for("P-1", eyes))
    assert bundle_values((tmp_path / "bundle.json").read_text())["OD"]["p"] == eyes[0].explanation.probabilities[
        "Cataract"]
    with pytest.raises(TypeError):
        write_exports("exam")  # type: ignore[arg-type]
