"""``cataract-cam pull`` and ``cataract-cam send``: eye photographs from a PACS, results to it.

The PACS is ``--dicomweb URL`` (default ``CATARACT_CAM_DICOMWEB_URL``, with its user and password
or token from the environment) or, for ``send``, ``--dimse AET@HOST:PORT``. A PACS that fails
gives one line on stderr and exit code 1; in a send, bad files and refused studies are listed and
the rest still goes (exit code 3 when some failed).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from components.cli.common import EXIT_OK, EXIT_PARTIAL, Command, UsageError, add_model_option, print_json

if TYPE_CHECKING:
    from components.interop.dicomweb import DicomWebConfig

__all__ = ["PULL", "SEND"]

EXIT_FAILED = 1
"""The PACS failed (down, refused, timed out): one line on stderr."""


def _config(args: argparse.Namespace) -> DicomWebConfig:
    from components.interop.dicomweb import DicomWebConfig

    try:
        config = DicomWebConfig.configured(url=args.dicomweb, timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if config is None:
        raise UsageError("Give the PACS with --dicomweb URL or CATARACT_CAM_DICOMWEB_URL.")
    return config


def _pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dicomweb", metavar="URL", default=None, help="DICOMweb root (default: CATARACT_CAM_DICOMWEB_URL)")
    p.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the photographs (OP and XC series)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the PACS (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_model_option(p, "checkpoint; pull runs no model and ignores it")


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull a study's eye photographs into a folder."""
    from components.interop.dicomweb import PacsClient, PacsError
    from components.interop.transfer import pull_study

    client = PacsClient(_config(args))
    try:
        paths = pull_study(client, args.study, args.out)
    except (PacsError, ValueError, OSError) as exc:
        message = str(exc) if not isinstance(exc, OSError) else "The output folder cannot be written."
        print(f"cataract-cam: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json({"study": args.study, "files": [str(p) for p in paths]}, indent=2)
    print(f"pulled {len(paths)} photograph(s)", file=sys.stderr)
    return EXIT_OK


def _send_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_DIR", help="DICOM files or folders (searched recursively)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dicomweb", metavar="URL", default=None,
                       help="DICOMweb root (default: CATARACT_CAM_DICOMWEB_URL)")
    where.add_argument("--dimse", metavar="AET@HOST:PORT", default=None, help="send by C-STORE instead")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the PACS (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    add_model_option(p, "checkpoint; send runs no model and ignores it")


def cmd_send(args: argparse.Namespace) -> int:
    """Send DICOM files to a PACS, study by study."""
    from components.interop.dicomweb import PacsClient
    from components.interop.dimse import parse_target
    from components.interop.transfer import send_files

    if args.dimse is not None:
        try:
            summary = send_files(args.inputs, dimse=parse_target(args.dimse))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    else:
        summary = send_files(args.inputs, client=PacsClient(_config(args)))
    for path, why in summary.bad_files:
        print(f"{path}: {why}", file=sys.stderr)
    for study in summary.studies:
        if study.error:
            print(f"cataract-cam: {study.error}", file=sys.stderr)
    if args.json:
        print_json({"studies": [{"study": s.study_uid, "stored": list(s.stored),
                                 "already_present": list(s.already_present), "error": s.error}
                                for s in summary.studies],
                    "bad_files": [{"file": str(p), "error": why} for p, why in summary.bad_files]}, indent=2)
    stored = sum(len(s.stored) for s in summary.studies)
    held = sum(len(s.already_present) for s in summary.studies)
    print(f"sent {stored} object(s), {held} already held by the PACS", file=sys.stderr)
    if not summary.studies:  # nothing was a DICOM file: the PACS was never asked
        raise UsageError("none of the inputs is a DICOM file, so nothing was sent.")
    if summary.ok:
        return EXIT_OK
    anything = stored + held
    return EXIT_PARTIAL if anything else EXIT_FAILED


PULL = Command("pull", "pull a study's eye photographs from a PACS (DICOMweb)", _pull_args, cmd_pull)
SEND = Command("send", "send DICOM results to a PACS (DICOMweb STOW-RS or DIMSE C-STORE)", _send_args, cmd_send)
