"""The ``cataract-cam`` command line: one clear line on stderr for bad input, JSON on stdout where asked."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"cataract-cam: error: {message}", file=sys.stderr)
    return code


def _load(args: argparse.Namespace) -> Any:
    from models import CheckpointError, load_classifier

    try:
        return load_classifier(args.model)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", default=None,
                   help="checkpoint to use (default: the shipped demonstration model)")


def _add_cam_options(p: argparse.ArgumentParser) -> None:
    from components.gradcam import METHODS
    from components.overlay import COLORMAPS

    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlay, 0 to 1 (default 0.5)")
    p.add_argument("--colormap", default="jet", choices=COLORMAPS)
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--target", default=None, metavar="CLASS", help="class to explain (default: the predicted one)")
    p.add_argument("--layer", default=None, help="layer to explain, dotted name (default: the model's, features.8)")


def _item_json(item: Any) -> dict[str, Any]:
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
    }


def _run_files(args: argparse.Namespace, files: Sequence[Path], out_dir: Path, *, progress: bool) -> int:
    from components.batch import explain_files, write_summary
    from components.gradcam import ExplainError

    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must lie between 0 and 1, got {args.alpha}.")
    classifier = _load(args)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="image", file=sys.stderr, disable=None)
    items = []
    try:
        for item in explain_files(classifier, files, out_dir=out_dir, method=args.method, target=args.target,
                                  layer=args.layer, alpha=args.alpha, colormap=args.colormap,
                                  workers=getattr(args, "workers", 2)):
            items.append(item)
            if bar is not None:
                bar.update(1)
            elif not args.json:
                status = item.error or f"{item.explanation.prediction} ({item.explanation.confidence:.1%})"
                print(f"{item.file}: {status}", file=sys.stderr)
    except ExplainError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    if getattr(args, "summary", False):
        write_summary(items, classifier.class_names, out_dir / "summary.csv")
    if args.json:
        json.dump([_item_json(i) for i in items], sys.stdout, indent=2)
        sys.stdout.write("\n")
    failed = sum(1 for i in items if i.error)
    if failed:
        print(f"cataract-cam: {failed} of {len(items)} file(s) failed", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    files = [Path(p) for p in args.images]
    return _run_files(args, files, Path(args.out), progress=False)


def cmd_batch(args: argparse.Namespace) -> int:
    from components.batch import collect_inputs

    missing = [p for p in args.inputs if not Path(p).exists()]
    files = collect_inputs(p for p in args.inputs if Path(p).exists())
    files += [Path(p) for p in missing]  # reported as failed rows, not silently dropped
    if not files:
        raise UsageError("No image files found in the given inputs.")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}.")
    args.summary = True
    return _run_files(args, files, Path(args.out), progress=True)


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os
    import subprocess

    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    env = dict(os.environ)
    if args.model:
        env["CATARACT_CAM_MODEL"] = str(Path(args.model).resolve())  # the app's start-up model
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port)]
    return subprocess.call(command, env=env)


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for gradcam_<name>.jpg (default: here)")
    _add_cam_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _batch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, default=2, help="decoding/writing threads (default 2)")
    _add_cam_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501)


def _commands() -> list[Command]:
    commands: list[Command] = [
        ("explain", "three-panel Grad-CAM picture per image", _explain_args, cmd_explain),
        ("batch", "explain folders of images; panels plus summary.csv", _batch_args, cmd_batch),
    ]
    # Subcommands whose engines live in their own modules register themselves here.
    for module_name in ("components.report_cli", "models.synthetic_cli", "models.train_cli",
                        "models.evaluate_cli", "components.audit_cli"):
        try:
            module = __import__(module_name, fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        commands.extend(module.COMMANDS)
    commands.append(("dashboard", "start the Streamlit dashboard", _dashboard_args, cmd_dashboard))
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cataract-cam",
        description="Cataract screening decision support with Grad-CAM evidence. "
                    "Decision support only, not a diagnosis.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_args, handler in _commands():
        # argparse %-formats help strings: a literal percent sign must be doubled there.
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        add_args(p)
        if "--model" not in p._option_string_actions:  # every subcommand takes --model
            _add_model(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
