"""Batch runs on a real Dask cluster (two worker processes on 127.0.0.1): the same rows as a local run, a worker
killed mid-run, resuming, S3 to S3 against moto, a scheduler that cannot be reached, a checkpoint that differs."""

from __future__ import annotations

import csv
import os
import signal
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.cluster import batch as dist
from components.cluster import storage
from components.cluster.storage import S3Settings
from components.workflows.batch import explain_files, write_summary
from tests.support import ROOT

pytestmark = pytest.mark.timeout(300)

CLASSES = ("Cataract", "Normal")
BAD = {"normal/broken.jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "cataract/empty.png": b"",
       "normal/notes.jpg": b"patient notes, not a picture"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """44 synthetic eyes in cataract/ and normal/, three bad files among them, and a name with odd characters."""
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("photos") / "set"
    generate_dataset(root, 44, 11)
    first = sorted((root / "normal").glob("*.jpg"))[0]
    first.rename(first.with_name("eye #1 ?ü 100%.jpg"))
    for name, data in BAD.items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def inputs(photos) -> list[str]:
    return storage.collect_sources([str(photos / "cataract"), str(photos / "normal"), str(photos / "gone.jpg")])


@pytest.fixture(scope="module")
def reference(trained_checkpoint, inputs, tmp_path_factory) -> dict[str, dict[str, str]]:
    """The local batch's rows for the same inputs, by file, with typicality and the attention check (as the CLI)."""
    from models import load_classifier

    classifier = load_classifier(trained_checkpoint)
    out = tmp_path_factory.mktemp("local")
    items = list(explain_files(classifier, [Path(p) for p in inputs], out_dir=out, typicality=True, attention=True))
    write_summary(items, classifier.class_names, out / "summary.csv")
    rows = _rows(out / "summary.csv")
    return {r["file"]: {**r, "panel": r["panel"].replace(str(out), "OUT")} for r in rows}


def _rows(path: Path | str, settings: S3Settings | None = None) -> list[dict[str, str]]:
    text = storage.read_bytes(str(path), settings).decode("utf-8")
    return list(csv.DictReader(text.splitlines()))


def _assert_same_rows(rows: list[dict[str, str]], reference: dict[str, dict[str, str]], *, key=lambda f: f) -> None:
    """Same inputs once each, same predictions and error rows, probabilities within 1e-5."""
    files = [key(r["file"]) for r in rows]
    assert len(files) == len(set(files)), "an input has two rows"
    assert set(files) == set(reference)
    for r in rows:
        ref = reference[key(r["file"])]
        for column in ("prediction", "target", "method", "layer", "error", "unlike_training", "attention"):
            assert r[column] == ref[column], (column, r["file"])
        for column in ("confidence", "ood_score", *(f"p_{c}" for c in CLASSES)):
            if ref[column]:
                assert ref[column] != "not available", (column, r["file"])  # the statistics were there
                assert abs(float(r[column]) - float(ref[column])) <= 1e-5, (column, r["file"])
            else:
                assert r[column] == ""


def test_reference_has_good_and_bad_rows(reference, inputs):
    assert len(inputs) == 48  # 44 eyes, 3 bad files, 1 missing
    errors = {f for f, r in reference.items() if r["error"]}
    assert {Path(f).name for f in errors} == {"broken.jpg", "empty.png", "notes.jpg", "gone.jpg"}
    assert all(reference[f]["prediction"] in CLASSES for f in reference if f not in errors)
    # Typicality and the attention check ran, so comparing those columns compares something.
    assert all(reference[f]["ood_score"] and reference[f]["attention"] for f in reference if f not in errors)


def test_cluster_is_two_local_worker_processes(dask_client):
    workers = dist.describe_workers(dask_client)
    assert len(workers) == 2
    assert all(w["address"].startswith("tcp://127.0.0.1:") and w["threads"] == 1 for w in workers)
    pids = dask_client.run(os.getpid)
    assert len(set(pids.values())) == 2
    assert os.getpid() not in pids.values()


def test_in_order_hands_on_each_outcome_as_soon_as_those_before_it_are_in():
    handed: list[int] = []
    in_order = dist.InOrder([3, 5, 8, 9], lambda o: handed.append(o.index))
    arrivals = []
    for index in (8, 5, 3, 9):
        in_order.add(SimpleNamespace(index=index))
        arrivals.append(list(handed))
    assert arrivals == [[], [], [3, 5, 8], [3, 5, 8, 9]]
    assert in_order.emitted == 4


def test_same_rows_as_local_run(dask_client, trained_checkpoint, inputs, reference, tmp_path):
    seen: list[tuple[int, int]] = []
    on_disk: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if (tmp_path / "summary.csv").is_file():
            on_disk.append(len(_rows(tmp_path / "summary.csv")))

    outcomes = dist.run_batch(dask_client, inputs, str(tmp_path), model=trained_checkpoint, torch_threads=1,
                              progress=progress)
    assert [o.item.file for o in outcomes] == inputs  # in input order
    # Each row reached summary.csv as soon as the rows before it were in, not at a checkpoint.
    assert on_disk == [done for done, _ in seen]
    rows = _rows(tmp_path / "summary.csv")
    assert [r["file"] for r in rows] == inputs
    _assert_same_rows(rows, reference)
    # Panels were written by the workers under the names the local batch gives them.
    for r in rows:
        assert r["panel"].replace(str(tmp_path), "OUT") == reference[r["file"]]["panel"]
        if r["panel"]:
            assert Path(r["panel"]).stat().st_size > 1000
    assert seen[0] == (0, 48)
    assert seen[-1] == (48, 48)


def test_worker_killed_mid_run_every_input_one_row(dask_client, trained_checkpoint, inputs, reference, tmp_path):
    killed: list[tuple[str, int]] = []

    def kill_one_busy_worker(done: int, total: int) -> None:
        if killed or done == 0:
            return
        busy = [a for a, keys in dask_client.processing().items() if keys]
        if busy:
            pid = dask_client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append((busy[0], pid))

    dist.run_batch(dask_client, inputs, str(tmp_path), model=trained_checkpoint, chunk_size=4, torch_threads=1,
                   progress=kill_one_busy_worker)
    assert killed, "no worker was busy after the first chunk"
    rows = _rows(tmp_path / "summary.csv")
    assert sorted(r["file"] for r in rows) == sorted(inputs)  # every input exactly once
    _assert_same_rows(rows, reference)
    assert not any(r["error"] == dist.LOST_WORKER_ERROR for r in rows)  # retried elsewhere, not given up
    # The nanny restarts the killed process; the model is loaded again on the new one.
    deadline = time.monotonic() + 60
    while len(dask_client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert killed[0][1] not in dask_client.run(os.getpid).values()


def test_interrupted_run_resumes_without_repeating(dask_client, trained_checkpoint, inputs, reference, tmp_path):
    def interrupt(done: int, total: int) -> None:
        if done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dist.run_batch(dask_client, inputs, str(tmp_path), model=trained_checkpoint, torch_threads=1,
                       progress=interrupt)
    first = _rows(tmp_path / "summary.csv")
    assert 16 <= len(first) < len(inputs)  # what was done is on disk
    totals: list[int] = []
    again = dist.run_batch(dask_client, inputs, str(tmp_path), model=trained_checkpoint, torch_threads=1, resume=True,
                           progress=lambda done, total: totals.append(total))
    assert totals[0] == len(inputs) - len(first)
    assert {o.item.file for o in again}.isdisjoint(r["file"] for r in first)
    rows = _rows(tmp_path / "summary.csv")
    assert sorted(r["file"] for r in rows) == sorted(inputs)
    _assert_same_rows(rows, reference)


def test_s3_to_s3_same_rows_as_disk(dask_client, trained_checkpoint, photos, inputs, reference, s3_endpoint):
    settings = S3Settings(s3_endpoint)
    s3 = storage.s3_client(settings)
    s3.create_bucket(Bucket="photos")
    s3.create_bucket(Bucket="results")
    for path in inputs:
        if Path(path).exists():
            s3.put_object(Bucket="photos", Key=f"clinic a/{Path(path).relative_to(photos).as_posix()}",
                          Body=Path(path).read_bytes())
    sources = storage.collect_sources(["s3://photos/clinic a"], settings)
    assert len(sources) == 47  # the missing file has no object
    downloads: list[str] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda **kw: downloads.append("get"))
    dist.run_batch(dask_client, sources, "s3://results/run 1", model=trained_checkpoint, settings=settings,
                   torch_threads=1)
    assert downloads == []  # the workers read the photographs; the client listed them only
    rows = _rows("s3://results/run 1/summary.csv", settings)
    by_relative = {str(Path(f).relative_to(photos).as_posix()): r for f, r in reference.items() if "gone" not in f}
    _assert_same_rows(rows, by_relative, key=lambda f: storage.split_s3(f)[1].removeprefix("clinic a/"))
    for r in rows:
        if r["panel"]:
            assert r["panel"].startswith("s3://results/run 1/gradcam_")
            assert storage.read_bytes(r["panel"], settings)[:3] == b"\xff\xd8\xff"  # a JPEG, uploaded
    # Resuming reads the summary back from the bucket: nothing is left to do, nothing is lost.
    totals: list[int] = []
    again = dist.run_batch(dask_client, sources, "s3://results/run 1", model=trained_checkpoint, settings=settings,
                           resume=True, progress=lambda done, total: totals.append(total))
    assert (again, totals) == ([], [0])
    assert _rows("s3://results/run 1/summary.csv", settings) == rows


def test_unreachable_scheduler_is_one_clear_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(dist.ClusterError) as info, dist.connect(f"tcp://127.0.0.1:{port}", timeout=2):
        pass
    assert time.monotonic() - started < 30
    assert str(info.value) == f"The Dask scheduler at tcp://127.0.0.1:{port} could not be reached within 2 s."
    with pytest.raises(ValueError, match="local:N or tcp://"):
        dist.connect("spark://x").__enter__()
    with pytest.raises(ValueError, match="positive number"):
        dist.connect("local:0").__enter__()


def test_worker_refuses_a_checkpoint_that_differs(dask_client, trained_checkpoint):
    plugin = dist.ModelPlugin(str(trained_checkpoint), "0" * 64)
    with pytest.raises(dist.ClusterError, match="differs from the client's"):
        dask_client.register_plugin(plugin, name="cataract-cam-test-wrong-sha")


@pytest.fixture
def tcp_scheduler():
    """A scheduler and two workers started as separate programs on 127.0.0.1; stopped by PID at the end."""
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], **quiet)
    workers = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                                "--death-timeout", "10"], **quiet)
    try:
        yield f"tcp://127.0.0.1:{port}", scheduler
    finally:
        for process in (workers, scheduler):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_lost_scheduler_then_resume_on_another_cluster(tcp_scheduler, dask_client, trained_checkpoint, inputs,
                                                       reference, tmp_path):
    address, scheduler = tcp_scheduler

    def lose_scheduler(done: int, total: int) -> None:
        if done >= 8 and scheduler.poll() is None:
            os.kill(scheduler.pid, signal.SIGKILL)

    with dist.connect(address, timeout=30) as client:
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(dist.ClusterError, match="lost; run again with --resume"):
            dist.run_batch(client, inputs, str(tmp_path), model=trained_checkpoint, torch_threads=1,
                           progress=lose_scheduler)
    saved = _rows(tmp_path / "summary.csv")
    assert 8 <= len(saved) < len(inputs)
    dist.run_batch(dask_client, inputs, str(tmp_path), model=trained_checkpoint, torch_threads=1, resume=True)
    rows = _rows(tmp_path / "summary.csv")
    assert sorted(r["file"] for r in rows) == sorted(inputs)
    _assert_same_rows(rows, reference)


def image_shape_and_cam_sum(item) -> tuple[tuple[int, ...], float] | None:
    """Runs on a worker: what only the worker holds, the decoded photograph and the full-size map."""
    if item.explanation is None:
        return None
    return item.image.shape, float(item.explanation.cam.sum())


def test_on_worker_sees_the_photograph_and_the_map(dask_client, trained_checkpoint, inputs, tmp_path):
    from models import load_classifier

    subset = inputs[:12]  # cataract/empty.png sorts among them: a failed item reaches on_worker too
    local = list(explain_files(load_classifier(trained_checkpoint), [Path(p) for p in subset], keep_images=True))
    outcomes = dist.run_batch(dask_client, subset, str(tmp_path), model=trained_checkpoint, torch_threads=1,
                              on_worker=image_shape_and_cam_sum)
    for outcome, item in zip(outcomes, local, strict=True):
        assert outcome.item.image is None  # the photograph stayed on the worker
        if item.explanation is None:
            assert outcome.extra is None
            continue
        shape, cam_sum = outcome.extra
        assert shape == item.image.shape
        assert cam_sum == pytest.approx(float(item.explanation.cam.sum()), rel=1e-3)


def test_more_local_workers_than_cores_is_said_to_be_pointless(monkeypatch):
    monkeypatch.setattr(dist.os, "cpu_count", lambda: 2)
    note = dist.oversubscribed("local:3")
    assert note is not None
    assert "2 cores" in note
    assert "no faster than local:2" in note
    assert dist.oversubscribed("local:2") is None
    assert dist.oversubscribed("local:1") is None
    assert dist.oversubscribed("tcp://127.0.0.1:8786") is None
    assert dist.local_torch_threads("local:3") == 1


def test_workers_keep_large_blocks_in_the_heap():
    """glibc takes every setting (an mmap threshold above its 32 MiB ceiling would be refused)."""
    import ctypes.util

    if ctypes.util.find_library("c") is None:
        pytest.skip("no C library to tune here")
    assert dist.tune_allocator() is True
    assert dist.WORKER_MALLOC[-3] <= 32 * 2**20
