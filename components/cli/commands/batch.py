"""``cataract-cam batch``: explain folders of images; panels plus summary.csv, a row for every input."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.cli import cluster
from components.cli.common import Command, UsageError, add_cam_options, add_json_option, add_model_option
from components.cli.outputs import run_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or folders (searched recursively), or s3:// objects and prefixes")
    p.add_argument("--out", required=True, metavar="DIR", help="folder or s3:// prefix for panels and summary.csv")
    p.add_argument("--workers", type=int, default=2, help="decoding/writing threads (default 2)")
    add_cam_options(p)
    add_json_option(p)
    add_model_option(p)
    cluster.add_cluster_options(p, resume=True)


def run(args: argparse.Namespace) -> int:
    from components.workflows.batch import collect_inputs

    if cluster.wants_cluster(args, args.inputs):
        return cluster.run_batch(args)
    missing = [p for p in args.inputs if not Path(p).exists()]
    files = collect_inputs(p for p in args.inputs if Path(p).exists())
    files += [Path(p) for p in missing]  # reported as failed rows, not silently dropped
    if not files:
        raise UsageError("No image files found in the given inputs.")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}.")
    return run_files(args, files, Path(args.out), summary=True, resume=args.resume, workers=args.workers)


COMMAND = Command("batch", "explain folders of images; panels plus summary.csv", add_arguments, run)
