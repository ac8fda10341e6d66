"""The ``cataract-cam audit`` and ``compare`` subcommands: a labelled folder checked, two models side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from components.cli import EXIT_OK, EXIT_PARTIAL, UsageError

MODALITY_CHOICES = ("auto", "external", "fundus")


def _load(path: str | None) -> Any:
    from models import CheckpointError, load_classifier

    try:
        return load_classifier(path)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None


def _modality(value: str) -> str | None:
    return None if value == "auto" else value


def _audit_args(p: argparse.ArgumentParser) -> None:
    from components.gradcam import METHODS

    p.add_argument("data", metavar="DATA", help="labelled folder: one sub-folder per class (cataract/, normal/), "
                                                "optional masks/<stem>_pupil.png")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.csv and gallery.html")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="checkpoint to audit (default: the shipped demonstration model)")
    p.add_argument("--modality", default="auto", choices=MODALITY_CHOICES,
                   help="external (and slit-lamp) or fundus photographs (default: detected per image)")
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document on stdout")


def cmd_audit(args: argparse.Namespace) -> int:
    """Explain and check every image, write audit.csv and gallery.html, print the summary."""
    from tqdm import tqdm

    from components import audit

    data = Path(args.data)
    if not data.is_dir():
        raise UsageError("DATA is not a folder; expected a folder with one sub-folder per class.")
    try:
        items = audit.read_labelled_folder(data)
    except audit.AuditError as exc:
        raise UsageError(str(exc)) from None
    classifier = _load(args.model)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("--out names a file; expected a folder (new or existing).")
    bar = tqdm(total=len(items), unit="image", file=sys.stderr, disable=None)

    def progress(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        rows = audit.audit(classifier, items, modality=_modality(args.modality), method=args.method,
                           progress=progress)
    finally:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    audit.write_csv(rows, out / "audit.csv")
    shown = audit.write_gallery(rows, out / "gallery.html", model_name=str(getattr(classifier, "name", "")),
                                demo=bool(getattr(classifier, "is_demo", False)))
    summary = audit.summary(rows)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{summary['n']} images: attention on the lens in {summary['on_lens_rate']:.1%}; "
              f"{len(summary['suspect_labels'])} suspect labels, {len(summary['off_lens'])} with attention off "
              f"the lens; {shown} flagged images in gallery.html", file=sys.stderr)
    return EXIT_OK


def _compare_args(p: argparse.ArgumentParser) -> None:
    from components.gradcam import METHODS
    from components.overlay import COLORMAPS

    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", action="append", metavar="PATH", required=True,
                   help="give twice: model A, then model B ('demo' for the shipped demonstration model)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for compare_<name>.jpg pictures")
    p.add_argument("--modality", default="auto", choices=MODALITY_CHOICES)
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlays, 0 to 1")
    p.add_argument("--colormap", default="jet", choices=COLORMAPS)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def cmd_compare(args: argparse.Namespace) -> int:
    """Two models on the same images: predictions, agreement, map similarity, verdicts, pictures."""
    from components import audit
    from components.batch import save_jpeg

    if len(args.model) != 2:
        raise UsageError(f"compare needs --model exactly twice (model A and model B), got {len(args.model)}.")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must lie between 0 and 1, got {args.alpha}.")
    models = [_load(None if m == "demo" else m) for m in args.model]
    names = tuple(str(getattr(m, "name", "")) or label for m, label in zip(models, ("Model A", "Model B"), strict=True))
    if names[0] == names[1]:
        names = (f"A: {names[0]}", f"B: {names[1]}")
    loaded = audit.load_images(args.images)
    good = [(n, px) for n, px, err in loaded if px is not None]
    failed = [(n, err) for n, px, err in loaded if px is None]
    results = audit.compare(models[0], models[1], [px for _, px in good], files=[n for n, _ in good],
                            names=names, modality=_modality(args.modality), method=args.method,
                            alpha=args.alpha, colormap=args.colormap, pictures=args.out is not None)
    pictures: dict[str, str] = {}
    if args.out is not None:
        out = Path(args.out)
        used: set[str] = set()
        for r in results:
            stem = Path(r.file).stem or "image"
            name, k = f"compare_{stem}.jpg", 2
            while name in used:
                name, k = f"compare_{stem}_{k}.jpg", k + 1
            used.add(name)
            assert r.picture is not None
            save_jpeg(r.picture, out / name)
            pictures[r.file] = str(out / name)
    agreement = sum(r.agree for r in results) / len(results) if results else None
    if args.json:
        doc = {"models": list(names), "agreement": agreement,
               "images": [{**r.as_dict(), "picture": pictures.get(r.file)} for r in results]
               + [{"file": n, "error": e} for n, e in failed]}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            print(f"{r.file}: {names[0]} {r.prediction_a} ({r.confidence_a:.1%}) | {names[1]} {r.prediction_b} "
                  f"({r.confidence_b:.1%}) | {'agree' if r.agree else 'DISAGREE'} | map Spearman {r.spearman:.2f}, "
                  f"top-20% overlap {r.top_overlap:.0%}", file=sys.stderr)
    for n, e in failed:
        print(f"{n}: {e}", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


COMMANDS = [
    ("audit", "check a labelled folder: suspect labels, attention off the lens, unreadable images",
     _audit_args, cmd_audit),
    ("compare", "two models side by side on the same images", _compare_args, cmd_compare),
]
