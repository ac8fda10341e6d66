"""``cataract-cam report``: explain a patient's OD/OS photographs and write the per-patient PDF."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from components.base.errors import CataractCamError
from components.cli.common import EXIT_OK, Command, UsageError, add_model_option, check_alpha, load_model
from components.screening.vocabulary import MODALITIES, SEXES

if TYPE_CHECKING:
    from components.report import EyeFindings, ModelInfo, PatientInfo
    from models import Classifier


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from components.explanation.cam import METHODS
    from components.explanation.overlay import COLORMAPS

    p.add_argument("--patient-id", required=True, help="pseudonymous patient ID")
    p.add_argument("--name", default=None)
    p.add_argument("--birth-date", type=_date, default=None, metavar="YYYY-MM-DD")
    p.add_argument("--sex", choices=SEXES, default=None)
    p.add_argument("--od", metavar="IMG", help="right eye photograph")
    p.add_argument("--os", metavar="IMG", help="left eye photograph")
    p.add_argument("--exam-date", type=_date, default=None, metavar="YYYY-MM-DD")
    p.add_argument("--modality", choices=MODALITIES, default=None,
                   help="kind of photograph (default: told from each image, external or fundus, "
                        "as the dashboard does)")
    p.add_argument("--reviewer", default=None, help="reviewing clinician (fills an unsigned review)")
    p.add_argument("--notes", default="", help="clinician's notes (fill an unsigned review)")
    p.add_argument("--method", choices=list(METHODS), default="gradcam")
    p.add_argument("--colormap", choices=COLORMAPS, default="jet")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--out", required=True, metavar="FILE.pdf",
                   help="PDF to write; a folder gets a file named from the sanitised patient ID")
    p.add_argument("--dicom-out", metavar="DIR", default=None,
                   help="also write the SR, the Secondary Captures and the PDF as DICOM here (needs --reviewer)")
    p.add_argument("--fhir", metavar="FILE.json", default=None,
                   help="also write the FHIR R4 Bundle here (needs --reviewer)")
    p.add_argument("--study-uid", metavar="UID", default=None,
                   help="study for photographs that are not DICOM (default: derived from the photographs)")
    p.add_argument("--organization", default=None,
                   help="the reviewer's organization; with it the SR is marked verified")
    add_model_option(p)


def _eye(classifier: Classifier, eye: str, source: str, args: argparse.Namespace) -> EyeFindings:
    """One eye's findings: the map and its attention check, or why the photograph cannot be graded."""
    from components.explanation.cam import explain
    from components.imaging.loading import ImageError, decode_image
    from components.report import EyeFindings, ReviewInfo
    from components.typicality.score import assess, explain_options
    from components.workflows.review import attention_for, guess_modality

    review = None
    if args.reviewer or args.notes:
        review = ReviewInfo(reviewer=args.reviewer or "", agrees=None, finding=None, grade=None,
                            notes=args.notes)
    common = {"eye": eye, "exam_date": args.exam_date, "colormap": args.colormap, "alpha": args.alpha,
              "review": review}
    try:
        image = decode_image(source).pixels
    except ImageError as exc:
        reason = str(exc)
    except OSError:
        reason = "The image file could not be read."
    else:
        # A fundus photograph checked as an external one would find no lens: tell them apart first.
        modality = args.modality or guess_modality(image) or "external"
        # Typicality's features come from the map's own forward pass.
        explanation = explain(classifier, [image], method=args.method, **explain_options(classifier))[0]
        checked = attention_for(image, explanation, modality)
        typicality = assess(classifier, [image], explanations=[explanation])[0].report_fields()
        return EyeFindings(image=image, explanation=explanation, attention=checked, modality=modality,
                           typicality=typicality, **common)
    return EyeFindings(image=None, explanation=None, gradable=False, ungradable_reason=reason,
                       modality=args.modality, **common)


def run(args: argparse.Namespace) -> int:
    from components.base.files import atomic_write_bytes
    from components.report import ModelInfo, PatientInfo, build_report, safe_filename

    if not (args.od or args.os):
        raise UsageError("Give at least one eye photograph with --od IMG or --os IMG.")
    check_alpha(args.alpha)
    if (args.dicom_out or args.fhir) and not args.reviewer:
        raise UsageError("--dicom-out and --fhir say who signed the results: give --reviewer.")
    classifier = load_model(args.model)
    try:
        eyes = [_eye(classifier, eye, src, args) for eye, src in (("OD", args.od), ("OS", args.os)) if src]
        patient = PatientInfo(pseudo_id=args.patient_id, name=args.name, birth_date=args.birth_date, sex=args.sex)
        pdf = build_report(patient, eyes, ModelInfo.from_classifier(classifier), reviewer=args.reviewer)
    except CataractCamError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    if out.is_dir():
        out = out / safe_filename(args.patient_id)
    atomic_write_bytes(out, pdf)
    if args.dicom_out or args.fhir:
        _export(args, patient, eyes, ModelInfo.from_classifier(classifier), pdf)
    unreadable = sum(1 for e in eyes if not e.gradable)
    print(f"report written ({len(pdf) / 1e6:.2f} MB, {len(eyes)} eye(s)"
          f"{f', {unreadable} ungradable' if unreadable else ''})", file=sys.stderr)
    return EXIT_OK


def _export(args: argparse.Namespace, patient: PatientInfo, eyes: list[EyeFindings], model: ModelInfo,
            pdf: bytes) -> None:
    """The report's DICOM objects and FHIR Bundle; study and patient from DICOM photographs where given."""
    from datetime import datetime

    from components.interop.dicom_files import dicom_source
    from components.interop.exam import ExamError
    from components.interop.from_report import exam_key_for, files_study_uid, signed_exam_from_report, write_exports

    sources = {}
    for eye, path in (("OD", args.od), ("OS", args.os)):
        try:
            header = dicom_source(path) if path else None
        except (OSError, ValueError):
            header = None  # that eye is ungradable already; the others keep their source
        if header is not None:
            sources[eye] = header
    key = exam_key_for(patient.pseudo_id, eyes)
    try:
        exam = signed_exam_from_report(patient, eyes, model, pdf, signer=args.reviewer,
                                       signed_at=datetime.now().astimezone(), sources=sources,
                                       study_uid=args.study_uid or files_study_uid(key), exam_key=key,
                                       organization=args.organization)
    except (ExamError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    written = write_exports(exam, dicom_out=args.dicom_out, fhir_out=args.fhir)
    print(f"exports written ({len(written)} file(s), study {exam.study_instance_uid})", file=sys.stderr)


COMMAND = Command("report", "per-patient PDF report with the Grad-CAM evidence", add_arguments, run)
