"""The clinic's systems on the Review page: "Send to PACS" after signing, its status, the FHIR download."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import streamlit as st

from components.interop import case
from components.interop.dicomweb import DicomWebConfig, PacsClient
from components.interop.ledger import SENT, SendLedger
from components.records import RecordStore
from components.records.settings import DB_URL_ENV, data_dir
from components.report import PatientInfo, safe_filename
from components.workflows import review_session as rs
from dashboard import state
from models import Classifier

ORGANIZATION_ENV = "CATARACT_CAM_ORGANIZATION"


@st.cache_resource(show_spinner=False, on_release=lambda ledger: ledger.close())
def _ledger(folder: str, db_url: str) -> SendLedger:
    return SendLedger(db_url or None, folder=Path(folder))


def ledger() -> SendLedger:
    """The send ledger beside the configured record store."""
    return _ledger(str(data_dir()), os.environ.get(DB_URL_ENV, ""))


def _secrets() -> dict[str, Any]:
    try:
        return dict(st.secrets)
    except Exception:  # no secrets file: Streamlit raises its own kinds
        return {}


def pacs_config() -> DicomWebConfig | None:
    """The PACS from CATARACT_CAM_DICOMWEB_URL (and its credentials), the environment first, then secrets."""
    try:
        return DicomWebConfig.from_env(secrets=_secrets())
    except ValueError:
        return None


def _send(store: RecordStore, clf: Classifier, patient: PatientInfo, eyes: list[rs.EyeReport],
          config: DicomWebConfig) -> None:
    findings = [make() for make in eyes]
    try:
        attempt = case.send_case(store, ledger(), patient, findings, clf, client=PacsClient(config),
                                 actor=state.actor(), organization=os.environ.get(ORGANIZATION_ENV) or None)
    except ValueError as error:  # e.g. eyes pulled from two different studies
        st.error(f"Not sent. {error}", icon=":material/cloud_off:")
        return
    # A rerun shows the new status; the message waits for it.
    if attempt.error:
        state.flash(f"Not sent. {attempt.error}", "error")
    else:
        state.flash(f"Sent to the PACS: {len(attempt.sop_uids)} objects (report, evidence, structured results).")
    st.rerun()


def clinic_ui(store: RecordStore, clf: Classifier, patient: PatientInfo, eyes: list[rs.EyeReport]) -> None:
    """The PACS status, "Send to PACS" once every eye is signed, and the FHIR Bundle download."""
    findings = [make() for make in eyes]
    signed = all(f.review is not None and f.review.signed_at is not None for f in findings)
    status = case.case_status(ledger(), patient, findings)
    config = pacs_config()
    st.markdown(f"**Clinic systems** · PACS: {'sent' if status == SENT else 'not sent'}")
    send_col, fhir_col, _ = st.columns([1, 1, 2])
    why = None if signed else "Sign every eye's review first."
    if config is None:
        why = "No PACS configured: set CATARACT_CAM_DICOMWEB_URL."
    if send_col.button("Send to PACS", icon=":material/cloud_upload:", disabled=why is not None, help=why,
                       key="send_pacs") and config is not None:
        _send(store, clf, patient, eyes, config)
    if signed:
        build = functools.partial(case.fhir_case, store, ledger(), patient, findings, clf, actor=state.actor(),
                                  organization=os.environ.get(ORGANIZATION_ENV) or None)
        fhir_col.download_button("Download FHIR bundle", data=build,
                                 file_name=safe_filename(patient.pseudo_id, ".json"),
                                 mime="application/fhir+json", icon=":material/download:", on_click="ignore",
                                 key="export_fhir")
