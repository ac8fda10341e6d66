"""``cataract-cam evaluate``: metrics with 95% bootstrap intervals on a labelled folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.base.errors import CataractCamError
from components.cli.common import (
    EXIT_OK,
    Command,
    UsageError,
    add_json_option,
    add_model_option,
    load_model,
    print_json,
)

if TYPE_CHECKING:
    from models import Classifier


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="folder with cataract/ and normal/ (masks/ and labels.csv optional)")
    add_json_option(p, "print the metrics as one JSON document on stdout")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for evaluation.json, evaluation_details.json, roc.png, reliability.png")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--write-card", action="store_true",
                   help="record these metrics in the model's card (the JSON file beside the checkpoint)")
    p.add_argument("--grid", default=None, metavar="PNG",
                   help="also write a picture of 12 eyes and their Grad-CAM overlays (needs labels.csv)")
    p.add_argument("--test-set", default=None, metavar="TEXT",
                   help="how the evaluated folder was made, recorded in the card with --write-card")
    add_model_option(p)


def _print_table(result: dict[str, Any]) -> None:
    print(f"n = {result['n']}, threshold = {result['threshold']:.4f}", file=sys.stderr)
    for name in ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"):
        m = result[name]
        if m["value"] is None:
            print(f"{name:>12}: undefined", file=sys.stderr)
        else:
            print(f"{name:>12}: {m['value']:.4f} (95% CI {m['ci95'][0]:.4f} to {m['ci95'][1]:.4f})", file=sys.stderr)
    print(f"{'ece':>12}: {result['ece']}", file=sys.stderr)
    print(f"{'confusion':>12}: {result['confusion']}", file=sys.stderr)
    print(f"{'pointing':>12}: {result['pointing_game']}", file=sys.stderr)
    print(f"{'energy':>12}: {result['energy_in_pupil_median']}", file=sys.stderr)


def _write_card(classifier: Classifier, result: dict[str, Any], args: argparse.Namespace) -> None:
    from models.training.evaluate import write_card

    if classifier.path is None:
        raise UsageError("--write-card needs a model file to write the card beside.")
    card = dict(classifier.card)
    card["metrics"] = {"test_set": args.test_set or Path(args.data).name,
                       "bootstrap": f"{args.resamples} group resamples, seed {args.seed}, percentile 95%",
                       **result}
    write_card(classifier.path, card)


def _write_grid(classifier: Classifier, args: argparse.Namespace) -> None:
    from components.base.files import atomic_write_bytes
    from components.imaging.loading import encode_png
    from models.training.evaluate import EvaluationError, gradcam_grid

    try:
        atomic_write_bytes(Path(args.grid), encode_png(gradcam_grid(classifier, args.data)))
    except (EvaluationError, OSError) as exc:
        raise UsageError(f"The Grad-CAM grid could not be made: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Evaluate the model on DATA; JSON on stdout with --json, a table on stderr otherwise."""
    from models.training.evaluate import evaluate

    if args.resamples < 1:
        raise UsageError(f"--resamples must be at least 1, got {args.resamples}.")
    if not Path(args.data).is_dir():
        raise UsageError("DATA must be a folder with cataract/ and normal/ sub-folders.")
    classifier = load_model(args.model)
    try:
        result, _ = evaluate(classifier, args.data, resamples=args.resamples, seed=args.seed, out_dir=args.out,
                             progress=True)
    except CataractCamError as exc:
        raise UsageError(str(exc)) from None
    if args.write_card:
        _write_card(classifier, result, args)
    if args.grid:
        _write_grid(classifier, args)
    if args.json:
        print_json(result)
    else:
        _print_table(result)
    return EXIT_OK


COMMAND = Command("evaluate", "metrics with 95% bootstrap intervals on a labelled folder", add_arguments, run)
