"""What every ``cataract-cam`` subcommand shares: the usage error, exit codes, options, the model and JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.base.errors import CataractCamError
from components.screening.vocabulary import ATTENTION_MODALITIES

if TYPE_CHECKING:
    from models import Classifier

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3
"""All went well; bad input (one line on stderr); some of the inputs failed, the rest were done."""
EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 70, 130, 141
"""A fault of this program (one line asking to report it); Ctrl-C; the reader of stdout went away."""


AUTO = "auto"
MODALITY_CHOICES = (AUTO, *ATTENTION_MODALITIES)
"""What --modality of audit and compare accepts: detected per image, or one for all."""


def modality_option(value: str) -> str | None:
    """The attention check's modality for a --modality value; None lets the check tell per image."""
    return None if value == AUTO else value


class UsageError(CataractCamError):
    """Bad input from the user: printed as one line, exit code 2."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, its one-line help, what it adds to its parser, and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Say what went wrong on one line of stderr; the exit code."""
    print(f"cataract-cam: error: {message}", file=sys.stderr)
    return code


def load_model(path: str | None) -> Classifier:
    """The checkpoint at ``path`` (None: the shipped demo model); one that cannot be used is a usage error."""
    from models import CheckpointError, load_classifier

    try:
        return load_classifier(path)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


def add_model_option(p: argparse.ArgumentParser, help_text: str = "checkpoint to use") -> None:
    p.add_argument("--model", metavar="PATH", default=None,
                   help=f"{help_text} (default: the shipped demonstration model)")


def add_json_option(p: argparse.ArgumentParser, help_text: str = "print one JSON document on stdout") -> None:
    p.add_argument("--json", action="store_true", help=help_text)


def add_cam_options(p: argparse.ArgumentParser) -> None:
    """--alpha, --colormap, --method, --target and --layer, as explain and batch take them."""
    from components.explanation.cam import METHODS
    from components.explanation.overlay import COLORMAPS

    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlay, 0 to 1 (default 0.5)")
    p.add_argument("--colormap", default="jet", choices=COLORMAPS)
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--target", default=None, metavar="CLASS", help="class to explain (default: the predicted one)")
    p.add_argument("--layer", default=None, help="layer to explain, dotted name (default: the model's, features.8)")


def check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must lie between 0 and 1, got {alpha}.")


def check_out_folder(out: Path) -> None:
    """An --out that must be a folder (new or existing) but names a file is a usage error."""
    if out.exists() and not out.is_dir():
        raise UsageError("--out names a file; expected a folder (new or existing).")


def print_json(doc: Any, *, indent: int | None = None) -> None:
    """One JSON document on stdout, and nothing else there."""
    json.dump(doc, sys.stdout, indent=indent)
    sys.stdout.write("\n")


class JsonList:
    """One JSON list on stdout, written an element at a time: a long run never holds all of them."""

    def __init__(self) -> None:
        self._count = 0
        sys.stdout.write("[")

    def add(self, doc: Any) -> None:
        text = json.dumps(doc, indent=2).replace("\n", "\n  ")
        sys.stdout.write(f"{',' if self._count else ''}\n  {text}")
        sys.stdout.flush()
        self._count += 1

    def close(self) -> None:
        sys.stdout.write("\n]\n" if self._count else "]\n")
        sys.stdout.flush()


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int, int], None]]:
    """A bar on stderr (none when stderr is not a terminal); yields ``progress(done, total)``."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="image", file=sys.stderr, disable=None)

    def progress(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        bar.close()
