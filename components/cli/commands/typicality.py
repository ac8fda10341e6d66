"""``cataract-cam typicality``: a checkpoint's typicality statistics, from its training photographs."""

from __future__ import annotations

import argparse
import sys

from components.base.errors import CataractCamError
from components.cli.common import EXIT_OK, Command, UsageError, add_json_option, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", required=True, help="the checkpoint; its sidecar JSON is updated")
    p.add_argument("--reference", metavar="DIR", required=True,
                   help="the model's training photographs (class sub-folders, or just photographs)")
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share held out to set the threshold (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--rate", type=float, default=0.05,
                   help="most in-distribution photographs that may be flagged (default 0.05)")
    add_json_option(p, "print a JSON summary on stdout")


def run(args: argparse.Namespace) -> int:
    """Fit the statistics, write them, and say what the threshold flags on the held-out photographs."""
    from components.workflows.typicality_reference import compute_for_checkpoint, sidecar_path

    try:
        stats = compute_for_checkpoint(args.model, args.reference, heldout_fraction=args.heldout_fraction,
                                       seed=args.seed, rate=args.rate)
    except (CataractCamError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    info = stats.info
    summary = {"threshold": stats.threshold, "reference_count": info["reference_count"],
               "heldout_count": info["heldout_count"], "heldout_flagged": info["heldout_flagged"],
               "skipped": info["skipped"], "labels": info["labels"], "sidecar": str(sidecar_path(args.model))}
    if args.json:
        print_json(summary)
    else:
        print(f"typicality statistics from {info['reference_count']} photographs, threshold {stats.threshold:.4g} "
              f"({info['heldout_flagged']:.1%} of {info['heldout_count']} held-out photographs flagged; "
              f"{info['skipped']} unreadable skipped), written to {sidecar_path(args.model).name}", file=sys.stderr)
    return EXIT_OK


COMMAND = Command("typicality", "compute a checkpoint's typicality statistics from its training photographs",
                  add_arguments, run)
