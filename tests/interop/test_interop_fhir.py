"""FHIR R4 Bundle of a signed exam: parses back to equal values, a real FHIR endpoint takes it, bad ones refused."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from components.interop.exam import Patient
from components.interop.fhir import BODY_SITES, FhirError, build_bundle, bundle_values, check_bundle, post_bundle
from tests.interop_support import PDF, eye_photograph, free_port, signed_exam
from tests.support import ROOT


@pytest.fixture(scope="module")
def fhir_endpoint():
    """fhirstarter (R4B, in-memory store) in its own process on 127.0.0.1, stopped by PID."""
    port = free_port()
    env = {**os.environ, "FHIR_SEQUENCE": "R4B", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.fhir_server:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the FHIR endpoint exited before it answered"
            try:
                if requests.get(f"{base}/metadata", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the FHIR endpoint did not answer within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_bundle_parses_back_into_equal_values():
    exam = signed_exam()
    bundle = build_bundle(exam)
    text = json.dumps(bundle)
    model = check_bundle(text)
    assert isinstance(model, Bundle)
    assert json.loads(Bundle.model_validate_json(text).model_dump_json()) == json.loads(model.model_dump_json())
    values = bundle_values(text)
    for eye in exam.eyes:
        got = values[eye.eye]
        assert got == {"status": "final", "p": eye.p, "threshold": eye.threshold,
                       "model_finding": eye.decision().finding, "attention_verdict": eye.attention_verdict,
                       "agrees": eye.agrees, "clinician_finding": eye.clinician_finding}
    (report,) = _resources(bundle, "DiagnosticReport")
    assert base64.b64decode(report["presentedForm"][0]["data"]) == PDF
    assert report["presentedForm"][0]["contentType"] == "application/pdf"
    # OD: 0.8125 >= 0.5 refers; OS: attention off the lens refers too (the one screening decision).
    assert report["conclusion"] == (
        "Refer to an ophthalmologist: Right eye (OD): probability of cataract 0.812 at or above the threshold "
        "0.50; Left eye (OS): the model's attention lies off the lens. "
        "The final decision rests with the reviewing clinician.")
    sites = {o["bodySite"]["coding"][0]["code"]: o["valueQuantity"]["value"] for o in _resources(bundle, "Observation")}
    assert sites == {"362502000": 0.8125, "362503005": 0.4375}
    (device,) = _resources(bundle, "Device")
    assert device["identifier"][0]["value"] == "ab" * 32
    assert device["version"][0]["value"] == "1.2"
    (practitioner,) = _resources(bundle, "Practitioner")
    assert practitioner["name"][0]["text"] == "Dr. A. Reviewer"
    (patient,) = _resources(bundle, "Patient")
    assert (patient["birthDate"], patient["gender"], patient["name"][0]["text"]) == ("1950-01-02", "female", "Jane Roe")
    assert _resources(bundle, "ImagingStudy") == []


def test_imaging_study_where_one_exists():
    source = eye_photograph("OD")
    bundle = build_bundle(signed_exam(source=source))
    (study,) = _resources(bundle, "ImagingStudy")
    assert study["identifier"][0]["value"] == f"urn:oid:{source.StudyInstanceUID}"
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    for obs in _resources(bundle, "Observation"):
        assert obs["derivedFrom"] == [{"reference": f"ImagingStudy/{study['id']}"}]
    assert len(_resources(build_bundle(signed_exam(), imaging_study=True), "ImagingStudy")) == 1


def test_same_review_same_ids_new_version_amended():
    exam = signed_exam()
    first, again = build_bundle(exam), build_bundle(exam)
    assert first == again
    v2 = build_bundle(dataclasses.replace(exam, review_version=2))
    assert {o["status"] for o in _resources(v2, "Observation")} == {"amended"}
    assert _resources(v2, "DiagnosticReport")[0]["id"] != _resources(first, "DiagnosticReport")[0]["id"]


def test_endpoint_accepts_the_bundle_and_a_resend_replaces(fhir_endpoint):
    bundle = build_bundle(signed_exam(source=eye_photograph("OD")))
    sent = post_bundle(bundle, fhir_endpoint)
    assert len(sent) == 7
    assert sent[0].startswith("Patient/")
    assert sent[-1].startswith("DiagnosticReport/")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        stored = requests.get(f"{fhir_endpoint}/_stored/{resource['resourceType']}/{resource['id']}", timeout=10)
        assert stored.status_code == 200
        got = stored.json()
        assert got["id"] == resource["id"]
        if resource["resourceType"] == "Observation":
            assert got["valueQuantity"]["value"] == resource["valueQuantity"]["value"]
            assert got["bodySite"]["coding"][0]["code"] == resource["bodySite"]["coding"][0]["code"]
        if resource["resourceType"] == "DiagnosticReport":
            assert base64.b64decode(got["presentedForm"][0]["data"]) == PDF
            assert got["conclusion"] == resource["conclusion"]
    assert post_bundle(bundle, fhir_endpoint) == sent  # PUT at the same ids: replaced, not duplicated


def test_endpoint_validates_what_it_receives(fhir_endpoint):
    bundle = build_bundle(signed_exam())
    obs = copy.deepcopy(_resources(bundle, "Observation")[0])
    del obs["code"]  # required by FHIR: the endpoint's own validation refuses it
    response = requests.put(f"{fhir_endpoint}/Observation/{obs['id']}", data=json.dumps(obs),
                            headers={"Content-Type": "application/fhir+json"}, timeout=10)
    assert 400 <= response.status_code < 500


def _break(bundle, kind, change):
    broken = copy.deepcopy(bundle)
    change(_resources(broken, kind)[0])
    return broken


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("Observation", lambda r: r.update(status="done"), r"Observation 1 has status 'done'; expected one of"),
        ("DiagnosticReport", lambda r: r.update(status="finished"), "DiagnosticReport has status 'finished'"),
        ("Observation", lambda r: r.pop("bodySite"), "Observation 1 has no laterality"),
        ("Observation", lambda r: r["bodySite"]["coding"][0].update(code="81745001"), "no laterality"),
        ("Observation", lambda r: r["valueQuantity"].update(value=1.5), r"in \[0, 1\]"),
        ("DiagnosticReport", lambda r: r.pop("presentedForm"), "PDF report as presentedForm"),
        ("DiagnosticReport", lambda r: r.update(subject={"reference": "Patient/elsewhere"}),
         "reference Patient/elsewhere does not resolve"),
        ("Observation", lambda r: r.update(valueQuantity="high"), "does not match the FHIR R4B structure"),
    ],
)
def test_checks_refuse_a_bad_bundle(kind, change, message):
    bundle = build_bundle(signed_exam())
    with pytest.raises(FhirError, match=message):
        check_bundle(_break(bundle, kind, change))


def test_bad_bundle_is_not_sent(fhir_endpoint):
    exam = dataclasses.replace(signed_exam(), patient=Patient("PSEUDO-NEVER-SENT"))
    bundle = _break(build_bundle(exam), "Observation", lambda r: r.update(status="done"))
    patient = _resources(bundle, "Patient")[0]
    with pytest.raises(FhirError, match="status 'done'"):
        post_bundle(bundle, fhir_endpoint)
    assert requests.get(f"{fhir_endpoint}/_stored/Patient/{patient['id']}", timeout=10).status_code == 404


def test_not_a_bundle_and_endpoint_down():
    with pytest.raises(FhirError, match="not valid JSON"):
        check_bundle("{nope")
    with pytest.raises(FhirError, match="resourceType must be Bundle"):
        check_bundle({"resourceType": "Patient"})
    with pytest.raises(TypeError):
        check_bundle(42)  # type: ignore[arg-type]
    with pytest.raises(FhirError, match=r"^The FHIR endpoint could not be reached after 0 of 6 resources; "
                                        r"sending again is safe\.$"):
        post_bundle(build_bundle(signed_exam()), f"http://127.0.0.1:{free_port()}", timeout=2)
    assert set(BODY_SITES) == {"OD", "OS"}
