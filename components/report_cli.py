"""``cataract-cam report``: explain a patient's OD/OS photographs and write the per-patient PDF."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from components.cli import UsageError, _load
from components.files import atomic_write_bytes
from components.gradcam import METHODS, ExplainError, explain
from components.imaging import ImageError, decode_image
from components.overlay import COLORMAPS
from components.report import (
    EyeFindings,
    ModelInfo,
    PatientInfo,
    ReportError,
    ReviewInfo,
    build_report,
    safe_filename,
)
from components.review_session import attention_fields, attention_for


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient-id", required=True, help="pseudonymous patient ID")
    p.add_argument("--name", default=None)
    p.add_argument("--birth-date", type=_date, default=None, metavar="YYYY-MM-DD")
    p.add_argument("--sex", choices=["F", "M", "X"], default=None)
    p.add_argument("--od", metavar="IMG", help="right eye photograph")
    p.add_argument("--os", metavar="IMG", help="left eye photograph")
    p.add_argument("--exam-date", type=_date, default=None, metavar="YYYY-MM-DD")
    p.add_argument("--modality", choices=["external", "slit_lamp", "fundus"], default="external")
    p.add_argument("--reviewer", default=None, help="reviewing clinician (fills an unsigned review)")
    p.add_argument("--notes", default="", help="clinician's notes (fill an unsigned review)")
    p.add_argument("--method", choices=list(METHODS), default="gradcam")
    p.add_argument("--colormap", choices=COLORMAPS, default="jet")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--out", required=True, metavar="FILE.pdf",
                   help="PDF to write; a folder gets a file named from the sanitised patient ID")


def _eye(classifier, eye: str, source: str, args: argparse.Namespace) -> EyeFindings:
    common = {"eye": eye, "exam_date": args.exam_date, "modality": args.modality, "colormap": args.colormap,
                  "alpha": args.alpha}
    review = None
    if args.reviewer or args.notes:
        review = ReviewInfo(reviewer=args.reviewer or "", agrees=None, finding=None, grade=None,
                            notes=args.notes)
    try:
        image = decode_image(source).pixels
    except ImageError as exc:
        return EyeFindings(image=None, explanation=None, gradable=False, ungradable_reason=str(exc),
                           review=review, **common)
    except OSError:
        return EyeFindings(image=None, explanation=None, gradable=False,
                           ungradable_reason="The image file could not be read.", review=review, **common)
    explanation = explain(classifier, [image], method=args.method)[0]
    attention = attention_fields(attention_for(image, explanation, args.modality))
    return EyeFindings(image=image, explanation=explanation, attention=attention, review=review, **common)


def run(args: argparse.Namespace) -> int:
    if not (args.od or args.os):
        raise UsageError("Give at least one eye photograph with --od IMG or --os IMG.")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must lie between 0 and 1, got {args.alpha}.")
    classifier = _load(args)
    try:
        eyes = [_eye(classifier, eye, src, args) for eye, src in (("OD", args.od), ("OS", args.os)) if src]
        patient = PatientInfo(pseudo_id=args.patient_id, name=args.name, birth_date=args.birth_date, sex=args.sex)
        pdf = build_report(patient, eyes, ModelInfo.from_classifier(classifier), reviewer=args.reviewer)
    except (ReportError, ExplainError) as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out)
    if out.is_dir():
        out = out / safe_filename(args.patient_id)
    atomic_write_bytes(out, pdf)
    unreadable = sum(1 for e in eyes if not e.gradable)
    print(f"report written ({len(pdf) / 1e6:.2f} MB, {len(eyes)} eye(s)"
          f"{f', {unreadable} ungradable' if unreadable else ''})", file=sys.stderr)
    return 0


COMMANDS = [("report", "per-patient PDF report with the Grad-CAM evidence", add_arguments, run)]
