"""What the file-running subcommands share: the loop that explains files into panels, and what they print."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    JsonList,
    UsageError,
    check_alpha,
    check_out_folder,
    load_model,
    print_json,
    progress_bar,
)

if TYPE_CHECKING:
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
        **({"attention": item.attention.verdict} if item.attention is not None else {}),
    }


def _status(item: BatchItem) -> str:
    ex = item.explanation
    if item.error or ex is None:
        return item.error or "no result"
    return f"{ex.prediction} ({ex.confidence:.1%})"


def run_files(args: argparse.Namespace, files: Sequence[Path], out_dir: Path, *, summary: bool = False,
              resume: bool = False, workers: int = 2) -> int:
    """Explain ``files`` into panels in ``out_dir``; a bar (batch, with ``summary``) or a line per file.

    Any number of files: each is written out as it is done (its ``summary.csv`` row flushed, its
    JSON printed) and then let go. With ``resume`` the files already in ``summary.csv`` are skipped.
    """
    from components.explanation.cam import ExplainError
    from components.workflows.batch import SUMMARY_NAME, SummaryWriter, explain_files

    check_alpha(args.alpha)
    classifier = load_model(args.model)
    check_out_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        writer = SummaryWriter(out_dir / SUMMARY_NAME, classifier.class_names, resume=resume) if summary else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    skip = writer.done if writer is not None else frozenset()
    todo = sum(1 for f in files if str(f) not in skip)
    done = failed = 0
    listing = JsonList() if args.json else None
    try:
        with progress_bar(todo) if summary else contextlib.nullcontext(None) as progress:
            for item in explain_files(classifier, files, out_dir=out_dir, method=args.method, target=args.target,
                                      layer=args.layer, alpha=args.alpha, colormap=args.colormap, workers=workers,
                                      typicality=True, attention=True, skip=skip, progress=progress):
                done += 1
                failed += bool(item.error)
                if writer is not None:
                    writer.add(item)
                if listing is not None:
                    listing.add(item_json(item))
                elif progress is None:
                    print(f"{item.file}: {_status(item)}", file=sys.stderr)
    except ExplainError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        if writer is not None:
            print(f"cataract-cam: interrupted; {SUMMARY_NAME} holds the rows done so far: run again with --resume",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if writer is not None:
            writer.close()
        if listing is not None:
            listing.close()
    if skip:
        print(f"cataract-cam: {len(files) - todo} file(s) already in {SUMMARY_NAME} were skipped", file=sys.stderr)
    if failed:
        print(f"cataract-cam: {failed} of {done} file(s) failed", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


def report_summary(summary: Mapping[str, Any], shown: int, *, as_json: bool) -> int:
    """The audit's summary (``components.workflows.audit.summary``): one JSON document on stdout, or one line
    on stderr; the exit code."""
    if as_json:
        print_json(summary, indent=2)
    else:
        print(f"{summary['n']} images: attention on the lens in {summary['on_lens_rate']:.1%}; "
              f"{len(summary['suspect_labels'])} suspect labels, {len(summary['off_lens'])} with attention off "
              f"the lens; {shown} flagged images in the gallery (gallery.html)", file=sys.stderr)
    return EXIT_OK
