"""FHIR R4 (R4B models) from a signed exam: a Bundle of DiagnosticReport, Observations, Device, Practitioner.

``fhir.resources`` checks structure but accepts any status string; :func:`check_bundle` adds the
value sets and required elements this export relies on (statuses, the eye's laterality, the PDF,
references that resolve). Resource ids are derived from the exam and review version, and the
endpoint receives each resource with PUT, so sending the same export twice changes nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from components.base.errors import CataractCamError
from components.base.text import without_controls
from components.interop.dicom_objects import (
    AGREES,
    ATTENTION,
    CLINICIAN_FINDING,
    CLINICIAN_FINDINGS,
    MODEL_FINDING,
    MODEL_FINDINGS,
    P_CATARACT,
    PROCEDURE,
    THRESHOLD,
    VERDICT_CODES,
)
from components.interop.exam import EyeResult, SignedExam
from components.screening.decision import FINAL_DECISION, next_step
from components.screening.vocabulary import DEMO_WARNING, EYE_LABELS

__all__ = [
    "BODY_SITES",
    "CODE_SYSTEM",
    "FhirError",
    "build_bundle",
    "bundle_values",
    "check_bundle",
    "post_bundle",
]

CODE_SYSTEM = "urn:cataract-cam:concepts"
"""The product's own concepts (the same codes as the DICOM objects' private scheme 99CATCAM)."""
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
BODY_SITES: Mapping[str, tuple[str, str]] = {
    "OD": ("362502000", "Entire right eye"),
    "OS": ("362503005", "Entire left eye"),
}
"""SNOMED CT body sites of the two eyes (HL7's eye-care value sets list these codes)."""
OBSERVATION_STATUS = frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"})
REPORT_STATUS = frozenset({"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                           "cancelled", "entered-in-error", "unknown"})
BUNDLE_TYPES = frozenset({"document", "message", "transaction", "transaction-response", "batch",
                          "batch-response", "history", "searchset", "collection"})
GENDERS = {"F": "female", "M": "male", "X": "other"}
_ORDER = ("Patient", "Practitioner", "Device", "ImagingStudy", "Observation", "DiagnosticReport")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cataract-cam:fhir-ids")


class FhirError(CataractCamError, ValueError):
    """A Bundle fails this export's checks, or an endpoint refused it; the message is one sentence."""


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, chr(31).join(parts)))


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display}


def _concept(code: Any) -> dict[str, Any]:
    """A pydicom Code of the private scheme or SNOMED as a FHIR CodeableConcept."""
    system = SNOMED if code.scheme_designator == "SCT" else CODE_SYSTEM
    return {"coding": [_coding(system, code.value, code.meaning)], "text": code.meaning}


def _instant(value: datetime) -> str:
    """FHIR instants need a zone; a naive time is the machine's local time, as in the report."""
    return (value if value.tzinfo is not None else value.astimezone()).isoformat(timespec="seconds")


def _ratio(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "probability", "system": UCUM, "code": "1"}


def _observation(exam: SignedExam, eye: EyeResult, refs: dict[str, str], status: str) -> dict[str, Any]:
    decision = eye.decision()
    site_code, site_display = BODY_SITES[eye.eye]
    components: list[dict[str, Any]] = [
        {"code": _concept(THRESHOLD), "valueQuantity": _ratio(decision.threshold)},
        {"code": _concept(MODEL_FINDING), "valueCodeableConcept": _concept(MODEL_FINDINGS[decision.finding])},
    ]
    if eye.attention_verdict is not None:
        components.append({"code": _concept(ATTENTION),
                           "valueCodeableConcept": _concept(VERDICT_CODES[eye.attention_verdict])})
    if eye.agrees is not None:
        components.append({"code": _concept(AGREES), "valueBoolean": eye.agrees})
    if eye.clinician_finding is not None:
        components.append({"code": _concept(CLINICIAN_FINDING), "valueCodeableConcept": _concept(
            CLINICIAN_FINDINGS[eye.clinician_finding])})
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id(exam.study_instance_uid, exam.exam_key, "observation", eye.eye, str(exam.review_version)),
        "status": status,
        "category": [{"coding": [_coding("http://terminology.hl7.org/CodeSystem/observation-category",
                                         "imaging", "Imaging")]}],
        "code": _concept(P_CATARACT),
        "subject": {"reference": refs["Patient"]},
        "effectiveDateTime": _instant(exam.signed_at),
        "performer": [{"reference": refs["Practitioner"]}],
        "device": {"reference": refs["Device"]},
        "bodySite": {"coding": [_coding(SNOMED, site_code, site_display)], "text": EYE_LABELS[eye.eye]},
        "component": components,
    }
    if decision.p is not None:
        obs["valueQuantity"] = _ratio(decision.p)
    else:
        obs["dataAbsentReason"] = {"coding": [_coding(
            "http://terminology.hl7.org/CodeSystem/data-absent-reason", "error", "Error")],
            "text": decision.label}
    if "ImagingStudy" in refs:
        obs["derivedFrom"] = [{"reference": refs["ImagingStudy"]}]
    if exam.model.is_demo:
        obs["note"] = [{"text": DEMO_WARNING}]
    return obs


def _identity_resources(exam: SignedExam, imaging_study: bool) -> list[dict[str, Any]]:
    """Patient, Practitioner, Device and (when there is one) ImagingStudy: only what the record holds."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": _id("patient", exam.patient.pseudo_id),
                               "identifier": [{"system": "urn:cataract-cam:pseudo-id",
                                               "value": exam.patient.pseudo_id}]}
    if exam.patient.name:
        patient["name"] = [{"text": " ".join(without_controls(exam.patient.name).split())}]  # FHIR forbids controls
    if exam.patient.birth_date:
        patient["birthDate"] = exam.patient.birth_date.isoformat()
    if exam.patient.sex:
        patient["gender"] = GENDERS[exam.patient.sex]
    model = exam.model
    device: dict[str, Any] = {
        "resourceType": "Device", "id": _id("device", model.weights_sha256),
        "identifier": [{"system": "urn:cataract-cam:weights-sha256", "value": model.weights_sha256}],
        "manufacturer": "cataract-cam", "deviceName": [{"name": model.name, "type": "model-name"}],
        "version": [{"value": model.version}],
    }
    if model.is_demo:
        device["note"] = [{"text": DEMO_WARNING}]
    out = [patient, {"resourceType": "Practitioner", "id": _id("practitioner", exam.signer),
                     "name": [{"text": exam.signer}]}, device]
    if imaging_study:
        out.append({"resourceType": "ImagingStudy", "id": _id("study", exam.study_instance_uid),
                    "status": "available", "subject": {"reference": f"Patient/{patient['id']}"},
                    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{exam.study_instance_uid}"}]})
    return out


def build_bundle(exam: SignedExam, *, imaging_study: bool | None = None) -> dict[str, Any]:
    """The exam as a FHIR R4 transaction Bundle (JSON-ready dict), checked by :func:`check_bundle`.

    ``imaging_study``: reference the exam's DICOM study as an ImagingStudy; by default only when a
    photograph came from DICOM (pass True once the results were sent to the PACS).

    Raises:
        TypeError: exam is not a SignedExam.
        FhirError: the Bundle fails the checks (a bug, never the caller's data).
    """
    if not isinstance(exam, SignedExam):
        raise TypeError(f"exam must be a SignedExam, got {type(exam).__name__}.")
    with_study = exam.source is not None if imaging_study is None else bool(imaging_study)
    resources = _identity_resources(exam, with_study)
    refs = {r["resourceType"]: f"{r['resourceType']}/{r['id']}" for r in resources}
    status = "final" if exam.review_version == 1 else "amended"
    observations = [_observation(exam, eye, refs, status) for eye in exam.ordered_eyes()]
    decisions = [eye.decision() for eye in exam.ordered_eyes()]
    reasons = [r for d in decisions for r in d.reasons]
    step = next_step(decisions)
    conclusion = " ".join([step + ("." if not reasons else ": " + "; ".join(reasons) + "."), FINAL_DECISION])
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _id(exam.study_instance_uid, exam.exam_key, "report", str(exam.review_version)),
        "status": status, "code": _concept(PROCEDURE), "subject": {"reference": refs["Patient"]},
        "effectiveDateTime": _instant(exam.signed_at), "issued": _instant(exam.signed_at),
        "performer": [{"reference": refs["Practitioner"]}], "resultsInterpreter": [{"reference": refs["Practitioner"]}],
        "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
        "conclusion": conclusion,
        "conclusionCode": [{"coding": [_coding(CODE_SYSTEM, "REFER" if step != next_step([]) else "ROUTINE", step)],
                            "text": step}],
        "presentedForm": [{"contentType": "application/pdf", "language": "en",
                           "data": base64.b64encode(exam.pdf).decode("ascii"),
                           "title": "Cataract screening report", "creation": _instant(exam.signed_at)}],
    }
    if with_study:
        report["imagingStudy"] = [{"reference": refs["ImagingStudy"]}]
    entries = [*resources, *observations, report]
    bundle = {"resourceType": "Bundle", "id": _id(exam.study_instance_uid, exam.exam_key, "bundle",
                                                  str(exam.review_version)),
              "type": "transaction", "timestamp": _instant(exam.signed_at),
              "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                        for r in entries]}
    check_bundle(bundle)
    return bundle


def _parse(bundle: Mapping[str, Any] | str | bytes) -> tuple[dict[str, Any], Bundle]:
    if isinstance(bundle, (str, bytes)):
        try:
            data = json.loads(bundle)
        except ValueError:
            raise FhirError("The Bundle is not valid JSON.") from None
    elif isinstance(bundle, Mapping):
        data = json.loads(json.dumps(bundle))
    else:
        raise TypeError(f"A Bundle must be a dict or JSON text, got {type(bundle).__name__}.")
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirError("The JSON is not a FHIR Bundle (resourceType must be Bundle).")
    try:
        model = Bundle.model_validate(data)
    except ValidationError as exc:
        # Only the element's location, never its value: values may identify the patient.
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise FhirError(f"The Bundle does not match the FHIR R4B structure at {where}.") from None
    return data, model


def _check_observation(obs: dict[str, Any], what: str) -> None:
    if obs.get("status") not in OBSERVATION_STATUS:
        allowed = ", ".join(sorted(OBSERVATION_STATUS))
        raise FhirError(f"{what} has status {obs.get('status')!r}; expected one of {allowed}.")
    if not obs.get("code", {}).get("coding"):
        raise FhirError(f"{what} has no coded code.")
    sites = {(c.get("system"), c.get("code")) for c in (obs.get("bodySite") or {}).get("coding", [])}
    if not sites & {(SNOMED, code) for code, _ in BODY_SITES.values()}:
        raise FhirError(f"{what} has no laterality: its bodySite must be SNOMED CT 362502000 (right eye) "
                        "or 362503005 (left eye).")
    if ("valueQuantity" in obs) == ("dataAbsentReason" in obs):
        raise FhirError(f"{what} needs either a valueQuantity or a dataAbsentReason.")
    quantity = obs.get("valueQuantity")
    if quantity is not None and not (quantity.get("system") == UCUM and quantity.get("code") == "1"
                                     and 0.0 <= float(quantity.get("value", -1)) <= 1.0):
        raise FhirError(f"{what} must give p(Cataract) in [0, 1] with the UCUM unit 1.")


def _check_report(report: dict[str, Any], ids: set[str]) -> None:
    if report.get("status") not in REPORT_STATUS:
        raise FhirError(f"The DiagnosticReport has status {report.get('status')!r}; expected one of "
                        f"{', '.join(sorted(REPORT_STATUS))}.")
    if not report.get("code", {}).get("coding") or not report.get("conclusion"):
        raise FhirError("The DiagnosticReport needs a coded code and a conclusion.")
    forms = [f for f in report.get("presentedForm", []) if f.get("contentType") == "application/pdf" and f.get("data")]
    if not forms:
        raise FhirError("The DiagnosticReport needs the PDF report as presentedForm (application/pdf with data).")
    results = [r.get("reference") for r in report.get("result", [])]
    if not results or any(not str(r).startswith("Observation/") for r in results):
        raise FhirError("The DiagnosticReport must list the eyes' Observations as its results.")


def check_bundle(bundle: Mapping[str, Any] | str | bytes) -> Bundle:
    """Check a Bundle against FHIR R4B and this export's rules; returns the parsed model.

    The rules: a known Bundle type; one DiagnosticReport with a known status, a code, a conclusion
    and the PDF; one Observation per eye with a known status, a code, the eye as SNOMED CT
    bodySite and p(Cataract) in [0, 1] (or why it is absent); every reference resolving inside the Bundle.

    Raises:
        TypeError: bundle is neither a dict nor JSON text.
        FhirError: the first rule it breaks, in one sentence.
    """
    data, model = _parse(bundle)
    if data.get("type") not in BUNDLE_TYPES:
        raise FhirError(f"The Bundle type {data.get('type')!r} is not a FHIR Bundle type.")
    resources = [e.get("resource") or {} for e in data.get("entry", [])]
    ids = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    reports = [r for r in resources if r.get("resourceType") == "DiagnosticReport"]
    if len(reports) != 1:
        raise FhirError(f"The Bundle must hold one DiagnosticReport, found {len(reports)}.")
    observations = [r for r in resources if r.get("resourceType") == "Observation"]
    if not observations:
        raise FhirError("The Bundle holds no Observation.")
    for i, obs in enumerate(observations, 1):
        _check_observation(obs, f"Observation {i}")
    _check_report(reports[0], ids)
    for ref in _references(data):
        if ref not in ids:
            raise FhirError(f"The reference {ref} does not resolve inside the Bundle.")
    return model


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for k, v in node.items() if k != "request" for r in _references(v)]
    if isinstance(node, list):
        return [r for v in node for r in _references(v)]
    return []


def bundle_values(bundle: Mapping[str, Any] | str | bytes) -> dict[str, dict[str, Any]]:
    """Per eye (by bodySite): p, threshold, model finding, attention verdict, agreement, clinician finding.

    Raises:
        TypeError: bundle is neither a dict nor JSON text.
        FhirError: the Bundle fails :func:`check_bundle`.
    """
    check_bundle(bundle)
    data, _ = _parse(bundle)
    by_site = {code: eye for eye, (code, _) in BODY_SITES.items()}
    back = {
        MODEL_FINDING.value: ("model_finding", {c.value: k for k, c in MODEL_FINDINGS.items()}),
        ATTENTION.value: ("attention_verdict", {c.value: k for k, c in VERDICT_CODES.items()}),
        CLINICIAN_FINDING.value: ("clinician_finding", {c.value: k for k, c in CLINICIAN_FINDINGS.items()}),
    }
    out: dict[str, dict[str, Any]] = {}
    for entry in data["entry"]:
        obs = entry["resource"]
        if obs["resourceType"] != "Observation":
            continue
        eye = next(by_site[c["code"]] for c in obs["bodySite"]["coding"] if c.get("code") in by_site)
        values: dict[str, Any] = {"status": obs["status"]}
        if "valueQuantity" in obs:
            values["p"] = obs["valueQuantity"]["value"]
        for comp in obs.get("component", []):
            code = comp["code"]["coding"][0]["code"]
            if code == THRESHOLD.value:
                values["threshold"] = comp["valueQuantity"]["value"]
            elif code == AGREES.value:
                values["agrees"] = comp["valueBoolean"]
            elif code in back:
                name, codes = back[code]
                values[name] = codes.get(comp["valueCodeableConcept"]["coding"][0]["code"])
        out[eye] = values
    return out


def post_bundle(bundle: Mapping[str, Any], base_url: str, *, timeout: float = 20.0,
                token: str | None = None) -> list[str]:
    """Send each resource of a checked Bundle to a FHIR endpoint with PUT; returns the resources' Type/id.

    PUT at fixed ids makes a repeated send replace, not duplicate. Resources go in dependency
    order (patient, practitioner, device, study, observations, report).

    Raises:
        TypeError: bundle is not a dict.
        FhirError: the Bundle fails :func:`check_bundle`, or the endpoint is down, times out or refuses.
    """
    if not isinstance(bundle, Mapping):
        raise TypeError(f"bundle must be a dict, got {type(bundle).__name__}.")
    check_bundle(bundle)
    base = base_url.rstrip("/")
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resources = sorted((e["resource"] for e in bundle["entry"]), key=lambda r: _ORDER.index(r["resourceType"]))
    sent: list[str] = []
    for resource in resources:
        path = f"{resource['resourceType']}/{resource['id']}"
        try:
            response = requests.put(f"{base}/{path}", data=json.dumps(resource), headers=headers, timeout=timeout)
        except requests.exceptions.Timeout:
            raise FhirError(f"The FHIR endpoint did not answer within {timeout:g} s after {len(sent)} of "
                            f"{len(resources)} resources; sending again is safe.") from None
        except requests.exceptions.RequestException:
            raise FhirError(f"The FHIR endpoint could not be reached after {len(sent)} of {len(resources)} "
                            "resources; sending again is safe.") from None
        if not response.ok:
            raise FhirError(f"The FHIR endpoint refused a {resource['resourceType']} with HTTP "
                            f"{response.status_code}; sending again is safe.")
        sent.append(path)
    return sent
