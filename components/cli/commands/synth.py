"""``cataract-cam synth``: write a folder of synthetic eye photographs with masks and labels.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.cli.common import (
    EXIT_OK,
    Command,
    UsageError,
    add_json_option,
    add_model_option,
    check_out_folder,
    print_json,
    progress_bar,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of images to write")
    p.add_argument("--seed", type=int, required=True, help="dataset seed; the same seed gives the same bytes")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for cataract/, normal/, masks/, labels.csv")
    p.add_argument("--cataract-fraction", type=float, default=0.5, help="share of cataract eyes (default 0.5)")
    add_json_option(p, "print a JSON summary on stdout")
    add_model_option(p)


def run(args: argparse.Namespace) -> int:
    """Write the data set, with a progress bar on stderr."""
    from models.synthetic import GENERATOR_VERSION, generate_dataset

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}.")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}.")
    if not 0.0 <= args.cataract_fraction <= 1.0:
        raise UsageError(f"--cataract-fraction must lie between 0 and 1, got {args.cataract_fraction}.")
    out = Path(args.out)
    check_out_folder(out)
    with progress_bar(args.n) as progress:
        rows = generate_dataset(out, args.n, args.seed, cataract_fraction=args.cataract_fraction, progress=progress)
    counts = {label: sum(r["label"] == label for r in rows) for label in ("cataract", "normal")}
    if args.json:
        print_json({"n": len(rows), "seed": args.seed, "generator_version": GENERATOR_VERSION, "counts": counts,
                    "out": str(out)})
    else:
        print(f"wrote {len(rows)} images ({counts['cataract']} cataract, {counts['normal']} normal) "
              f"with generator {GENERATOR_VERSION}", file=sys.stderr)
    return EXIT_OK


COMMAND = Command("synth", "synthetic eye photographs with masks and labels.csv", add_arguments, run)
