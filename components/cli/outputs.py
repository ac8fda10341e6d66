"""What the file-running subcommands share: the loop that explains files into panels, and what they print."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.cli.common import EXIT_OK, EXIT_PARTIAL, UsageError, check_alpha, load_model, print_json, progress_bar

if TYPE_CHECKING:
    from components.workflows.audit import AuditRow
    from components.workflows.batch import BatchItem

__all__ = ["item_json", "report_summary", "run_files"]


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
    from components.explanation.cam import ExplainError
    from components.workflows.batch import explain_files, write_summary

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


def report_summary(rows: Sequence[AuditRow], shown: int, *, as_json: bool) -> int:
    """The audit's summary: one JSON document on stdout, or one line on stderr; the exit code."""
    from components.workflows import audit

    summary = audit.summary(rows)
    if as_json:
        print_json(summary, indent=2)
    else:
        print(f"{summary['n']} images: attention on the lens in {summary['on_lens_rate']:.1%}; "
              f"{len(summary['suspect_labels'])} suspect labels, {len(summary['off_lens'])} with attention off "
              f"the lens; {shown} flagged images in gallery.html", file=sys.stderr)
    return EXIT_OK
