"""The clinic's systems on the Review page: "Send to PACS" after signing, its status, the FHIR download."""

from __future__ import annotations

import functools

import streamlit as st

from components.base import config
from components.interop import case
from components.interop.dicomweb import DicomWebConfig, PacsClient
from components.interop.ledger import SENT
from components.records import RecordStore
from components.report import PatientInfo, safe_filename
from components.workflows import review as rs
from dashboard import resources, session
from models import Classifier


def pacs_config() -> DicomWebConfig | None:
    """The PACS from CATARACT_CAM_DICOMWEB_URL (and its credentials), the environment first, then secrets."""
    try:
        return DicomWebConfig.configured()
    except ValueError:
        return None


def _send(store: RecordStore, clf: Classifier, patient: PatientInfo, eyes: list[rs.EyeReport],
          pacs: DicomWebConfig) -> None:
    findings = [make() for make in eyes]
    try:
        attempt = case.send_case(store, resources.ledger(), patient, findings, clf, client=PacsClient(pacs),
                                 actor=session.actor(), organization=config.text(config.ORGANIZATION))
    except ValueError as error:  # e.g. eyes pulled from two different studies
        st.error(f"Not sent. {error}", icon=":material/cloud_off:")
        return
    # A rerun shows the new status; the message waits for it.
    if attempt.error:
        session.flash(f"Not sent. {attempt.error}", "error")
    else:
        session.flash(f"Sent to the PACS: {len(attempt.sop_uids)} objects (report, evidence, structured results).")
    st.rerun()


def clinic_ui(store: RecordStore, clf: Classifier, patient: PatientInfo, eyes: list[rs.EyeReport]) -> None:
    """The PACS status, "Send to PACS" once every eye is signed, and the FHIR Bundle download."""
    findings = [make() for make in eyes]
    signed = all(f.review is not None and f.review.signed_at is not None for f in findings)
    status = case.case_status(resources.ledger(), patient, findings)
    pacs = pacs_config()
    st.markdown(f"**Clinic systems** · PACS: {'sent' if status == SENT else 'not sent'}")
    send_col, fhir_col, _ = st.columns([1, 1, 2])
    why = None if signed else "Sign every eye's review first."
    if pacs is None:
        why = f"No PACS configured: set {config.DICOMWEB_URL.name}."
    if send_col.button("Send to PACS", icon=":material/cloud_upload:", disabled=why is not None, help=why,
                       key="send_pacs") and pacs is not None:
        _send(store, clf, patient, eyes, pacs)
    if signed:
        build = functools.partial(case.fhir_case, store, resources.ledger(), patient, findings, clf,
                                  actor=session.actor(), organization=config.text(config.ORGANIZATION))
        fhir_col.download_button("Download FHIR bundle", data=build,
                                 file_name=safe_filename(patient.pseudo_id, ".json"),
                                 mime="application/fhir+json", icon=":material/download:", on_click="ignore",
                                 key="export_fhir")
