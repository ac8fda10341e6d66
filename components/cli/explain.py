"""``cataract-cam explain``: a three-panel Grad-CAM picture per image, and the file loop batch shares."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    Command,
    UsageError,
    add_cam_options,
    add_json_option,
    add_model_option,
    check_alpha,
    load_model,
    print_json,
    progress_bar,
)

if TYPE_CHECKING:
    from components.batch import BatchItem


def item_json(item: BatchItem) -> dict[str, Any]:
    """One batch item as the JSON document of ``explain`` and ``batch`` shows it."""
    ex = item.explanation
    return {
        "file": item.file,
        "prediction": ex.prediction if ex else None,
        "confidence": ex.confidence if ex else None,
        "probabilities": ex.probabilities if ex else None,
        "target": ex.target if ex else None,
        "method": ex.method if ex else None,
        "layer": ex.layer if ex else None,
        "panel": str(item.panel_path) if item.panel_path else None,
        "error": item.error,
        **({"typicality": item.typicality.as_dict()} if item.typicality is not None else {}),
    }


def _status(item: BatchItem) -> str:
    ex = item.explanation
    if item.error or ex is None:
        return item.error or "no result"
    return f"{ex.prediction} ({ex.confidence:.1%})"


def run_files(args: argparse.Namespace, files: Sequence[Path], out_dir: Path, *, summary: bool = False,
              workers: int = 2) -> int:
    """Explain ``files`` into panels in ``out_dir``; a bar (batch, with ``summary``) or a line per file."""
    from components.batch import explain_files, write_summary
    from components.gradcam import ExplainError

    check_alpha(args.alpha)
    classifier = load_model(args.model)
    items = []
    with progress_bar(len(files)) if summary else contextlib.nullcontext(None) as progress:
        try:
            for item in explain_files(classifier, files, out_dir=out_dir, method=args.method, target=args.target,
                                      layer=args.layer, alpha=args.alpha, colormap=args.colormap, workers=workers,
                                      typicality=True, progress=progress):
                items.append(item)
                if progress is None and not args.json:
                    print(f"{item.file}: {_status(item)}", file=sys.stderr)
        except ExplainError as exc:
            raise UsageError(str(exc)) from None
    if summary:
        write_summary(items, classifier.class_names, out_dir / "summary.csv")
    if args.json:
        print_json([item_json(i) for i in items], indent=2)
    failed = sum(1 for i in items if i.error)
    if failed:
        print(f"cataract-cam: {failed} of {len(items)} file(s) failed", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for gradcam_<name>.jpg (default: here)")
    add_cam_options(p)
    add_json_option(p)
    add_model_option(p)


def run(args: argparse.Namespace) -> int:
    return run_files(args, [Path(p) for p in args.images], Path(args.out))


COMMAND = Command("explain", "three-panel Grad-CAM picture per image", add_arguments, run)
