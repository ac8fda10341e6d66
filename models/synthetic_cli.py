"""The ``cataract-cam synth`` subcommand: write a folder of synthetic eye photographs with masks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components.cli import UsageError


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, required=True, help="number of images to write")
    p.add_argument("--seed", type=int, required=True, help="dataset seed; the same seed gives the same bytes")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for cataract/, normal/, masks/, labels.csv")
    p.add_argument("--cataract-fraction", type=float, default=0.5, help="share of cataract eyes (default 0.5)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def cmd_synth(args: argparse.Namespace) -> int:
    """Write the data set, with a progress bar on stderr."""
    from tqdm import tqdm

    from models.synthetic import GENERATOR_VERSION, generate_dataset

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}.")
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}.")
    if not 0.0 <= args.cataract_fraction <= 1.0:
        raise UsageError(f"--cataract-fraction must lie between 0 and 1, got {args.cataract_fraction}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out names a file; expected a folder (new or existing).")
    bar = tqdm(total=args.n, unit="image", file=sys.stderr, disable=None)

    def progress(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        rows = generate_dataset(out, args.n, args.seed, cataract_fraction=args.cataract_fraction, progress=progress)
    finally:
        bar.close()
    counts = {label: sum(r["label"] == label for r in rows) for label in ("cataract", "normal")}
    if args.json:
        json.dump({"n": len(rows), "seed": args.seed, "generator_version": GENERATOR_VERSION, "counts": counts,
                   "out": str(out)}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"wrote {len(rows)} images ({counts['cataract']} cataract, {counts['normal']} normal) "
              f"with generator {GENERATOR_VERSION}", file=sys.stderr)
    return 0


COMMANDS = [("synth", "synthetic eye photographs with masks and labels.csv", _synth_args, cmd_synth)]
