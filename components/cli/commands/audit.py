"""``cataract-cam audit``: check a labelled folder for suspect labels, attention off the lens, unreadable images."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.cli.cluster import add_cluster_options
from components.cli.common import (
    AUTO,
    MODALITY_CHOICES,
    Command,
    UsageError,
    add_json_option,
    add_model_option,
    check_out_folder,
    load_model,
    modality_option,
    progress_bar,
)
from components.cli.outputs import report_summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    from components.explanation.cam import METHODS

    p.add_argument("data", metavar="DATA", help="labelled folder or s3:// prefix: one sub-folder per class "
                                                "(cataract/, normal/), optional masks/<stem>_pupil.png")
    p.add_argument("--out", required=True, metavar="DIR", help="folder or s3:// prefix for audit.csv and gallery.html")
    add_model_option(p, "checkpoint to audit")
    p.add_argument("--modality", default=AUTO, choices=MODALITY_CHOICES,
                   help="external (and slit-lamp) or fundus photographs (default: detected per image)")
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    add_json_option(p, "print the summary as one JSON document on stdout")
    add_cluster_options(p, resume=False)


def run(args: argparse.Namespace) -> int:
    """Explain and check every image, write audit.csv and gallery.html, print the summary."""
    from components.cli import cluster
    from components.workflows import audit

    if cluster.wants_cluster(args, [args.data]):
        return cluster.run_audit(args)
    data = Path(args.data)
    if not data.is_dir():
        raise UsageError("DATA is not a folder; expected a folder with one sub-folder per class.")
    try:
        items = audit.read_labelled_folder(data)
    except audit.AuditError as exc:
        raise UsageError(str(exc)) from None
    classifier = load_model(args.model)
    out = Path(args.out)
    check_out_folder(out)
    # Rows stream into audit.csv and the gallery's saved pictures: any number of images.
    outputs = audit.AuditOutputs(out)
    with progress_bar(len(items)) as progress:
        for row in audit.audit_rows(classifier, items, modality=modality_option(args.modality), method=args.method,
                                    progress=progress):
            outputs.add(row)
    shown = outputs.finish(model_name=classifier.name, demo=classifier.is_demo)
    return report_summary(outputs.tally.summary(), shown, as_json=args.json)


COMMAND = Command("audit", "check a labelled folder: suspect labels, attention off the lens, unreadable images",
                  add_arguments, run)
