"""Peak memory (RSS) of whole runs: few huge photographs, and many small ones.

    python benchmarks/bench_memory.py [--part large,many] [--count 24] [--side 5000] [--formats png,jpeg]
                                      [--many 20000] [--few 1000] [--commands batch,audit] [--dask local:2]

Each run is a fresh child process whose peak resident set size is read from the kernel when it
exits (``os.wait4``); the baselines are measured in the same run.

- large: ``cataract-cam batch`` (the shipped demo model, two decoding threads, batches of 8) over
  24 photographs of 25 megapixels, against 1 and 8 of them: with the decoding bounded to one batch
  ahead, 24 cost about what 8 do. Target: at most 1 GB for the 24.
- many: ``cataract-cam batch`` and ``cataract-cam audit`` over 20,000 small photographs (48x36,
  the demo model's weights at a 32-pixel input so that each costs little), against the same over
  1,000. Rows stream to summary.csv and audit.csv, the audit's figures come from running tallies
  and its gallery is paged, so memory does not grow with the number of photographs. Target: the
  20,000 within 50 MiB of the 1,000. With ``--dask ADDRESS`` the same commands run on a cluster
  and the client process is measured (the workers are other processes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TARGET_BYTES = 1_000_000_000
MANY_TARGET_BYTES = 50 * 2**20
SMALL_INPUT = 32  # the smallest input a checkpoint may name


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
    command = ([sys.executable, "-m", "components", "batch", *map(str, files), "--out", str(out)] if files
               else [sys.executable, "-c", FLOOR])
    return _child_peak(command)


def _child_peak(command: list[str]) -> int:
    """Peak RSS in bytes of ``command`` run to its end in a fresh process; a failure ends the benchmark."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CATARACT_CAM_MODEL", None)
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"batch failed ({child.returncode}): {stderr[-2000:]}")
    return int(usage.ru_maxrss) * 1024  # kilobytes on Linux


def small_photographs(folder: Path, n: int, seed: int) -> None:
    """``n`` different 48x36 PNG photographs, each with a dark disc somewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:36, 0:48]
    for i in range(n):
        image = np.full((36, 48, 3), 200, np.uint8)
        image[np.hypot(yy - rng.integers(8, 28), xx - rng.integers(8, 40)) < rng.integers(3, 9)] = (30, 20, 10)
        image[0, :3] = (i % 256, (i // 256) % 256, 7)  # every photograph's pixels differ
        Image.fromarray(image).save(folder / f"eye{i:05d}.png", compress_level=1)


def small_model(path: Path) -> Path:
    """The demo model's weights in a checkpoint that takes 32-pixel inputs."""
    from models import DEMO_MODEL_PATH, load_classifier, save_checkpoint

    demo = load_classifier(DEMO_MODEL_PATH)
    save_checkpoint(path, demo.model, class_names=demo.class_names, input_size=SMALL_INPUT,
                    card={"name": "bench-memory-small"})
    return path


def many_small(tmp: Path, many: int, few: int, commands: list[str], dask: str | None = None) -> bool:
    """Peak RSS of each command over ``few`` and ``many`` labelled small photographs; True when on target."""
    model = small_model(tmp / "small.pt")
    ok = True
    for n in (few, many):
        small_photographs(tmp / f"set{n}" / "cataract", n // 2, seed=1)
        small_photographs(tmp / f"set{n}" / "normal", n - n // 2, seed=2)
    where = f", on the cluster {dask} (the client process)" if dask else ""
    print(f"\nMany small photographs (48x36 PNG; the demo model's weights at {SMALL_INPUT} px{where}):")
    for command in commands:
        peaks = {}
        for n in (few, many):
            data, out = tmp / f"set{n}", tmp / f"{command}{n}"
            started = time.perf_counter()
            cluster = ["--dask", dask] if dask else []
            peaks[n] = _child_peak([sys.executable, "-m", "components", command, str(data), "--out", str(out),
                                    "--model", str(model), *cluster])
            seconds = time.perf_counter() - started
            print(f"  {command} over {n:6d}: peak RSS {peaks[n] / 2**20:7.0f} MiB ({seconds:.0f} s, "
                  f"{seconds / n * 1000:.1f} ms a photograph)")
        grew = peaks[many] - peaks[few]
        met = grew <= MANY_TARGET_BYTES
        ok = ok and met
        print(f"  {command}: {many} photographs against {few}: {grew / 2**20:+.0f} MiB "
              f"(target within {MANY_TARGET_BYTES / 2**20:.0f} MiB: {'met' if met else 'MISSED'})")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="large,many", help="large, many or both (default)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--side", type=int, default=5000, help="photograph side in pixels (5000: 25 megapixels)")
    parser.add_argument("--formats", default="png,jpeg")
    parser.add_argument("--many", type=int, default=20000)
    parser.add_argument("--few", type=int, default=1000)
    parser.add_argument("--commands", default="batch,audit")
    parser.add_argument("--dask", default=None, help="run the many-photograph commands on this cluster")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    ok = True
    if "many" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            ok = many_small(Path(tmp), args.many, args.few, args.commands.split(","), args.dask)
    if "large" in parts:
        ok = large(args) and ok
    return 0 if ok else 1


def large(args: argparse.Namespace) -> bool:
    """Peak RSS of a batch over ``args.count`` huge photographs against 1 and 8 of them; True when on target."""
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
    return worst <= TARGET_BYTES


if __name__ == "__main__":
    sys.exit(main())
