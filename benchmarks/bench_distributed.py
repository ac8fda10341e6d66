"""Batch throughput three ways on the same photographs: local, ``--dask local:2``, and a two-worker tcp:// cluster.

    python benchmarks/bench_distributed.py [--n 200] [--repeats 3] [--work DIR]

Every way does what `cataract-cam batch` does (typicality and the attention check on, panels
written). It first checks that the machine is quiet (load average, other processes' CPU) and says
so; on a busy machine it measures but prints no verdict. The ways run round-robin, ``--repeats``
times, and the median is reported with its ratio to the local batch of the same run (targets on
a quiet 2-core machine: local:2 >= 0.95x, tcp:// with two workers >= 0.9x). Dask's performance
report of each cluster's first run (task stream, worker profiles) is saved as HTML under
``--work``. Also printed: the per-image cost split of a worker's work (decode, model, panels)
plus what a cluster adds (transfer: a result's round trip through the scheduler, and the bytes an
input and a row carry). The photographs are synthetic eyes (512x384 JPEG), cached under ``--work``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import pickle
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.cluster import batch as dist  # noqa: E402
from components.explanation.cam import explain  # noqa: E402
from components.explanation.overlay import three_panel  # noqa: E402
from components.imaging.loading import decode_image  # noqa: E402
from components.workflows.batch import explain_files, panel_caption, save_jpeg, write_summary  # noqa: E402

TARGETS = {"dask local:2": 0.95, "dask tcp:// (2 workers)": 0.9}
QUIET_LOAD = 1.0  # one-minute load average
QUIET_OTHERS = 10.0  # percent of one core used by processes that are not this benchmark's


def other_cpu(seconds: float = 3.0) -> float:
    """Percent of one core that processes other than this one and its children used over ``seconds``."""
    import psutil

    me = psutil.Process()
    ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
    procs = [p for p in psutil.process_iter() if p.pid not in ours]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(seconds)
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.cpu_percent(None)
    return total


def quiet(label: str, *, load_counts: bool = True) -> bool:
    """Print whether the machine is quiet now (load average and others' CPU), and return it.

    After the runs the load average is this benchmark's own, so only the others' CPU counts then.
    """
    load = os.getloadavg()[0]
    others = other_cpu()
    ok = (load < QUIET_LOAD or not load_counts) and others < QUIET_OTHERS
    held = f"quiet below {QUIET_LOAD}" if load_counts else "ours, not counted"
    print(f"machine {label}: load average {load:.2f} ({held}), other processes {others:.0f}% "
          f"of a core (quiet below {QUIET_OTHERS:.0f}%): {'quiet' if ok else 'NOT QUIET'}")
    return ok


def photographs(work: Path, n: int) -> list[str]:
    """``n`` synthetic eye photographs, generated once and cached."""
    from models.synthetic import generate_dataset

    folder = work / f"eyes_{n}"
    if not (folder / "labels.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        generate_dataset(folder, n, 2027)
    return sorted(str(p) for p in folder.rglob("*.jpg") if p.parent.name != "masks")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_tcp_cluster(workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and a worker process group started as separate programs, as on real machines."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                               "--nworkers", str(workers), "--nthreads", "1", "--host", "127.0.0.1",
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"tcp://127.0.0.1:{port}", [worker, scheduler]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def run_local(files: list[str], out: Path) -> float:
    from models import load_classifier

    start = time.perf_counter()
    classifier = load_classifier(None)
    items = list(explain_files(classifier, [Path(f) for f in files], out_dir=out, workers=2, typicality=True,
                               attention=True))
    write_summary(items, classifier.class_names, out / "summary.csv")
    assert not any(i.error for i in items)
    return time.perf_counter() - start


def run_dask(client: object, files: list[str], out: Path, threads: int) -> float:
    start = time.perf_counter()
    outcomes = dist.run_batch(client, files, str(out), torch_threads=threads)
    assert len(outcomes) == len(files)
    assert not any(o.item.error for o in outcomes)
    return time.perf_counter() - start


def wait_for_workers(client: object, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < count:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit("the tcp:// workers did not join within 60 s")
        time.sleep(0.2)


def cost_split(files: list[str], client: object, threads: int) -> dict[str, float]:
    """Milliseconds per image of each stage of the batch's work on ``threads`` PyTorch and OpenCV threads.

    One thread is what a worker process has; the machine's cores what the local batch has (its
    decode and panel threads overlap these stages; here they run one after another).
    """
    import cv2

    from components.lens import attention
    from components.lens.finder import find_lens
    from components.typicality.score import assess, explain_options
    from models import load_classifier

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    classifier = load_classifier(None)
    options = explain_options(classifier)
    sample = files[:48]
    min_side = max(classifier.input_size, 1024 * 3 // 4)
    t = time.perf_counter()
    images = [decode_image(f, min_side=min_side).pixels for f in sample]
    decode = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    explanations = []
    for k in range(0, len(images), 8):
        explanations += explain(classifier, images[k:k + 8], batch_size=8, **options)
        assess(classifier, images[k:k + 8], explanations=explanations[k:k + 8])
    model = (time.perf_counter() - t) / len(sample)
    t = time.perf_counter()
    for image, ex in zip(images, explanations, strict=True):
        attention.check(image, ex.cam, region=find_lens(image))
    check = (time.perf_counter() - t) / len(sample)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for i, (image, ex) in enumerate(zip(images, explanations, strict=True)):
            panel = three_panel(image, ex.cam, caption=panel_caption(ex), max_side=1024)
            save_jpeg(panel, Path(tmp) / f"p{i}.jpg")
        panels = (time.perf_counter() - t) / len(sample)
    torch.set_num_threads(os.cpu_count() or 1)
    cv2.setNumThreads(os.cpu_count() or 1)
    # What a chunk's results cost to bring back: a task that only returns 8 outcomes of real size.
    outcome = dist.BatchOutcome(0, dist.BatchItem(file=sample[0]))
    row_bytes = len(pickle.dumps(outcome))
    rounds = []
    for _ in range(20):
        t = time.perf_counter()
        client.submit(_echo, [outcome] * 8, pure=False).result()  # type: ignore[attr-defined]
        rounds.append((time.perf_counter() - t) / 8)
    return {"decode": decode * 1e3, "model and typicality": model * 1e3, "attention check": check * 1e3,
            "panels": panels * 1e3,
            "transfer": statistics.median(rounds) * 1e3, "row_bytes": float(row_bytes),
            "input_bytes": statistics.mean(Path(f).stat().st_size for f in sample)}


def _echo(x: object) -> object:
    return x


def timeline(tasks: list[dict], start: float, end: float, path: Path, title: str) -> str:
    """Write one run's task stream as an HTML timeline (a row per worker thread); a line on where the time went.

    Each task's ``startstops`` say when it computed and when it fetched data. The line gives each
    worker's busy share of the run, the wait before its first task and its idle tail.
    """
    rows: dict[str, list[tuple[float, float, str]]] = {}
    for task in tasks:
        for part in task.get("startstops", ()):
            rows.setdefault(task.get("worker", "?"), []).append(
                (part["start"] - start, part["stop"] - start, part["action"]))
    span = max(end - start, 1e-9)
    width, lane = 1000, 28
    colours = {"compute": "#4477aa", "transfer": "#ee6677", "disk-read": "#ccbb44", "disk-write": "#228833"}
    svg = [f'<svg width="{width + 220}" height="{lane * len(rows) + 40}" xmlns="http://www.w3.org/2000/svg">']
    notes = []
    for k, (worker, parts) in enumerate(sorted(rows.items())):
        y = 20 + k * lane
        svg.append(f'<text x="0" y="{y + 16}" font-size="12">{html.escape(worker)}</text>')
        for a, b, action in parts:
            x = 220 + a / span * width
            w = max((b - a) / span * width, 0.5)
            svg.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane - 6}" '
                       f'fill="{colours.get(action, "#999999")}">'
                       f'<title>{html.escape(action)} {b - a:.3f} s</title></rect>')
        busy = sum(b - a for a, b, action in parts if action == "compute")
        first = min(a for a, _, _ in parts)
        last = max(b for _, b, _ in parts)
        notes.append(f"{worker}: busy {busy / span:.0%}, first task after {first:.2f} s, idle tail {span - last:.2f} s")
    svg.append("</svg>")
    path.write_text(f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                    f"<h1>{html.escape(title)}: {span:.1f} s</h1><p>blue: compute, red: transfer</p>"
                    + "".join(svg) + "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
                    encoding="utf-8")
    return f"{title}, {span:.1f} s: " + "; ".join(notes)


def main() -> None:
    from distributed import get_task_stream

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "distributed")
    args = parser.parse_args()
    files = photographs(args.work, args.n)
    cores = os.cpu_count() or 1
    print(f"{len(files)} photographs, {platform.machine()}, {cores} cores, torch {torch.__version__}")
    for workers in (3, 4):
        note = dist.oversubscribed(f"local:{workers}")
        if note is not None:
            print(f"not measured: {note}")
    quiet_before = quiet("before")
    times: dict[str, list[float]] = {"local": [], "dask local:2": [], "dask tcp:// (2 workers)": []}
    address, processes = start_tcp_cluster(2)
    reports: list[Path] = []
    try:
        t = time.perf_counter()
        with dist.connect("local:2") as local_client, dist.connect(address, timeout=30) as tcp_client:
            wait_for_workers(tcp_client, 2)
            print(f"both clusters up in {time.perf_counter() - t:.1f} s")
            # A first small run on each cluster loads the model on every worker, as a long run's start does.
            with tempfile.TemporaryDirectory() as tmp:
                run_dask(local_client, files[:8], Path(tmp) / "w1", 1)
                run_dask(tcp_client, files[:8], Path(tmp) / "w2", 1)
            for repeat in range(args.repeats):  # round-robin, so a busy spell on the machine hits every way
                with tempfile.TemporaryDirectory() as tmp:
                    times["local"].append(run_local(files, Path(tmp) / "a"))
                    for way, client, name in (("dask local:2", local_client, "local2"),
                                              ("dask tcp:// (2 workers)", tcp_client, "tcp2")):
                        if repeat == 0:
                            report = args.work / f"dask-timeline-{name}.html"
                            reports.append(report)
                            start = time.time()
                            with client.as_current(), get_task_stream() as stream:
                                times[way].append(run_dask(client, files, Path(tmp) / name, 1))
                            print(timeline(stream.data, start, time.time(), report, way))
                        else:
                            times[way].append(run_dask(client, files, Path(tmp) / name, 1))
            splits = {"a worker (1 thread)": cost_split(files, local_client, 1),
                      f"the local batch ({cores} threads)": cost_split(files, local_client, cores)}
    finally:
        stop(processes)
    quiet_after = quiet("after", load_counts=False)
    local_ips = len(files) / statistics.median(times["local"])
    print(f"\n| way | median of {args.repeats} runs (s) | images/s | x local |\n| --- | ---: | ---: | ---: |")
    ratios = {}
    for way, runs in times.items():
        ips = len(files) / statistics.median(runs)
        ratios[way] = ips / local_ips
        print(f"| {way} | {statistics.median(runs):.1f} | {ips:.1f} | {ratios[way]:.2f} |")
    print("Per-worker timelines of each cluster's first run: " + ", ".join(str(r) for r in reports))
    if quiet_before and quiet_after:
        for way, target in TARGETS.items():
            verdict = "PASS" if ratios[way] >= target else "FAIL"
            print(f"{way} vs local: {ratios[way]:.2f}x (target >= {target}x): {verdict}")
    else:
        print("No verdict: the machine was not quiet, so the ratios above say little about the cluster.")
    stages = ("decode", "model and typicality", "attention check", "panels", "transfer")
    for who, split in splits.items():
        total = sum(split[k] for k in stages)
        print(f"\nPer image, {who}, stages one after another (ms): " + ", ".join(
            f"{k} {split[k]:.1f} ({split[k] / total:.0%})" for k in stages) + f"; {total:.1f} in all")
    print(f"An input is {split['input_bytes'] / 1024:.0f} KB read by the worker; a row comes back in "
          f"{split['row_bytes']:.0f} bytes.")
    per_machine = len(files) / min(statistics.median(times[w]) for w in times if w != "local") * 3600
    for machines in (1, 10, 50):
        print(f"{machines} machine(s) like this one ({cores} cores): "
              f"about {machines * per_machine:,.0f} images per hour")


if __name__ == "__main__":
    main()
