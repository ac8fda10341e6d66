"""``cataract-cam compare``: two models side by side on the same images, with pictures and agreement."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from components.cli.common import (
    AUTO,
    EXIT_OK,
    EXIT_PARTIAL,
    MODALITY_CHOICES,
    Command,
    UsageError,
    add_json_option,
    check_alpha,
    load_model,
    modality_option,
    print_json,
)

if TYPE_CHECKING:
    from components.workflows.audit import Comparison


def add_arguments(p: argparse.ArgumentParser) -> None:
    from components.explanation.cam import METHODS
    from components.explanation.overlay import COLORMAPS

    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", action="append", metavar="PATH", required=True,
                   help="give twice: model A, then model B ('demo' for the shipped demonstration model)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for compare_<name>.jpg pictures")
    p.add_argument("--modality", default=AUTO, choices=MODALITY_CHOICES)
    p.add_argument("--method", default="gradcam", choices=list(METHODS))
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlays, 0 to 1")
    p.add_argument("--colormap", default="jet", choices=COLORMAPS)
    add_json_option(p)


def _save_pictures(results: Sequence[Comparison], out: Path) -> dict[str, str]:
    """compare_<stem>.jpg per image (numbered where two images share a stem); file -> picture path."""
    from components.workflows.batch import save_jpeg

    pictures: dict[str, str] = {}
    used: set[str] = set()
    for r in results:
        stem = Path(r.file).stem or "image"
        name, k = f"compare_{stem}.jpg", 2
        while name in used:
            name, k = f"compare_{stem}_{k}.jpg", k + 1
        used.add(name)
        assert r.picture is not None  # asked for with pictures=True
        save_jpeg(r.picture, out / name)
        pictures[r.file] = str(out / name)
    return pictures


def run(args: argparse.Namespace) -> int:
    """Two models on the same images: predictions, agreement, map similarity, verdicts, pictures."""
    from components.workflows import audit

    if len(args.model) != 2:
        raise UsageError(f"compare needs --model exactly twice (model A and model B), got {len(args.model)}.")
    check_alpha(args.alpha)
    models = [load_model(None if m == "demo" else m) for m in args.model]
    a, b = (str(getattr(m, "name", "")) or label for m, label in zip(models, ("Model A", "Model B"), strict=True))
    names = (f"A: {a}", f"B: {b}") if a == b else (a, b)
    loaded = audit.load_images(args.images)
    good = [(n, px) for n, px, err in loaded if px is not None]
    failed = [(n, err) for n, px, err in loaded if px is None]
    results = audit.compare(models[0], models[1], [px for _, px in good], files=[n for n, _ in good],
                            names=names, modality=modality_option(args.modality), method=args.method,
                            alpha=args.alpha, colormap=args.colormap, pictures=args.out is not None)
    pictures = _save_pictures(results, Path(args.out)) if args.out is not None else {}
    agreement = sum(r.agree for r in results) / len(results) if results else None
    if args.json:
        print_json({"models": list(names), "agreement": agreement,
                    "images": [{**r.as_dict(), "picture": pictures.get(r.file)} for r in results]
                    + [{"file": n, "error": e} for n, e in failed]}, indent=2)
    else:
        for r in results:
            print(f"{r.file}: {names[0]} {r.prediction_a} ({r.confidence_a:.1%}) | {names[1]} {r.prediction_b} "
                  f"({r.confidence_b:.1%}) | {'agree' if r.agree else 'DISAGREE'} | map Spearman {r.spearman:.2f}, "
                  f"top-20% overlap {r.top_overlap:.0%}", file=sys.stderr)
    for n, e in failed:
        print(f"{n}: {e}", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK


COMMAND = Command("compare", "two models side by side on the same images", add_arguments, run)
