"""Peak memory (RSS) of ``cataract-cam batch`` over 24 photographs of 25 megapixels, against 8 and 1.

    python benchmarks/bench_memory.py [--count 24] [--side 5000] [--formats png,jpeg]

Each run is a fresh child process (the shipped demo model, two decoding threads, batches of 8)
whose peak resident set size is read from the kernel when it exits (``os.wait4``). The same
command over 1 and 8 of the photographs, measured in the same run, are the baselines: with the
decoding bounded to one batch ahead, 24 photographs cost about what 8 do. The target is at most
1 GB for the 24.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TARGET_BYTES = 1_000_000_000


def photograph(side: int) -> Image.Image:
    """A side x side picture with an eye-like disc and a gradient: structure that does not compress away."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    disc = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).astype(np.float32)
    red = (120 + 100 * disc + 30 * xx).astype(np.uint8)
    green = (80 + 60 * yy - 40 * disc).clip(0, 255).astype(np.uint8)
    blue = (60 + 50 * (1 - disc) * xx).astype(np.uint8)
    return Image.fromarray(np.dstack([red, green, blue]))


def write_set(folder: Path, fmt: str, count: int, side: int) -> list[Path]:
    """``count`` photographs of one picture, each with its own first row so no two files are equal."""
    folder.mkdir(parents=True)
    picture = photograph(side)
    paths = []
    for i in range(count):
        picture.putpixel((0, 0), (i, i, i))
        path = folder / f"eye{i:02d}.{fmt}"
        if fmt == "png":
            picture.save(path, format="PNG", compress_level=1)
        else:
            picture.save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


FLOOR = ("from components.cli import main\n"
         "from models import DEMO_MODEL_PATH, load_classifier\n"
         "load_classifier(DEMO_MODEL_PATH)\n")


def peak_rss(files: list[Path], out: Path) -> int:
    """Peak RSS in bytes of ``cataract-cam batch`` over ``files`` (a fresh process); no files: the floor.

    The floor is the same process loading the demo model and explaining nothing: Python, torch
    and the model, which every run pays whatever it does.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CATARACT_CAM_MODEL", None)
    command = ([sys.executable, "-m", "components", "batch", *map(str, files), "--out", str(out)] if files
               else [sys.executable, "-c", FLOOR])
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"batch failed ({child.returncode}): {stderr[-2000:]}")
    return int(usage.ru_maxrss) * 1024  # kilobytes on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--side", type=int, default=5000, help="photograph side in pixels (5000: 25 megapixels)")
    parser.add_argument("--formats", default="png,jpeg")
    args = parser.parse_args()
    worst = 0
    with tempfile.TemporaryDirectory() as tmp:
        floor = peak_rss([], Path(tmp))
        print(f"floor (Python, torch and the demo model, no photograph): {floor / 2**20:.0f} MiB")
        for fmt in args.formats.split(","):
            files = write_set(Path(tmp) / fmt, fmt, args.count, args.side)
            size = sum(f.stat().st_size for f in files) / len(files)
            print(f"{fmt.upper()}: {args.count} photographs of {args.side}x{args.side} "
                  f"({args.side * args.side / 1e6:.0f} megapixels, {size / 1e6:.1f} MB each)")
            one = peak_rss(files[:1], Path(tmp) / f"out1_{fmt}")
            eight = peak_rss(files[:8], Path(tmp) / f"out8_{fmt}")
            full = peak_rss(files, Path(tmp) / f"out_{fmt}")
            worst = max(worst, full)
            print(f"  peak RSS, 1 photograph:   {one / 2**20:7.0f} MiB")
            print(f"  peak RSS, 8 photographs:  {eight / 2**20:7.0f} MiB")
            print(f"  peak RSS, {args.count} photographs: {full / 2**20:7.0f} MiB "
                  f"({full / eight:.2f}x the 8, {full / one:.2f}x the 1; target {TARGET_BYTES / 1e9:.1f} GB: "
                  f"{'met' if full <= TARGET_BYTES else 'MISSED'})")
            print(f"  above the floor: 1 -> {(one - floor) / 2**20:.0f} MiB, 8 -> {(eight - floor) / 2**20:.0f} MiB, "
                  f"{args.count} -> {(full - floor) / 2**20:.0f} MiB")
    return 0 if worst <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
