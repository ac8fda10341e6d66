"""``cataract-cam export``: a stored patient's signed case as a FHIR R4 Bundle, written and optionally posted."""

from __future__ import annotations

import argparse
import sys

from components.base.errors import CataractCamError
from components.cli.common import EXIT_OK, Command, UsageError, add_model_option, load_model

EXIT_FAILED = 1
"""The FHIR endpoint failed: one line on stderr (the Bundle file is written all the same)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient-id", required=True, help="pseudonymous ID of a patient in the records")
    p.add_argument("--fhir", required=True, metavar="FILE.json", help="where to write the Bundle")
    p.add_argument("--post", metavar="URL", default=None, help="also send it to this FHIR endpoint (PUT per resource)")
    p.add_argument("--actor", default="command line", help="who the audit trail names (default: command line)")
    p.add_argument("--organization", default=None, help="the signer's organization")
    add_model_option(p, "checkpoint that explained the photographs")


def run(args: argparse.Namespace) -> int:
    from components.base.files import atomic_write_bytes
    from components.interop.case import case_from_records, fhir_case
    from components.interop.fhir import FhirError, post_bundle
    from components.interop.ledger import SendLedger
    from components.records import Identity, RecordStore

    classifier = load_model(args.model)
    store = RecordStore()
    ledger = SendLedger()
    try:
        patient, eyes = case_from_records(store, args.patient_id, classifier)
        data = fhir_case(store, ledger, patient, eyes, classifier, actor=Identity.unauthenticated(args.actor),
                         organization=args.organization)
    except (CataractCamError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        ledger.close()
        store.close()
    atomic_write_bytes(args.fhir, data)
    print(f"FHIR Bundle written ({len(eyes)} eye(s))", file=sys.stderr)
    if args.post:
        import json

        try:
            sent = post_bundle(json.loads(data), args.post)
        except FhirError as exc:
            print(f"cataract-cam: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"posted {len(sent)} resource(s)", file=sys.stderr)
    return EXIT_OK


COMMAND = Command("export", "a stored patient's signed case as a FHIR R4 Bundle (file, optional POST)",
                  add_arguments, run)
