"""Whole datasets: no cap on a run, a row per input as it completes, a killed run resumed to one row each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.base.tables import read_csv
from tests.support import ROOT, seeded_model

SMALL = 32  # the smallest input a checkpoint may name: each photograph costs the model little


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A seeded EfficientNet-B0 that takes 32-pixel inputs."""
    from models import save_checkpoint

    path = tmp_path_factory.mktemp("small_model") / "small.pt"
    save_checkpoint(path, seeded_model(5), class_names=("Cataract", "Normal"), input_size=SMALL,
                    card={"name": "small-test"})
    return path


def _photographs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` different small photographs (48x36 PNG), each with a dark disc somewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:36, 0:48]
    paths = []
    for i in range(n):
        image = np.full((36, 48, 3), 200, np.uint8)
        image[np.hypot(yy - rng.integers(8, 28), xx - rng.integers(8, 40)) < rng.integers(3, 9)] = (30, 20, 10)
        image[0, :3] = (i % 256, (i // 256) % 256, 7)  # every photograph's pixels differ
        path = folder / f"eye{i:05d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout, check=False)


def test_batch_and_audit_over_3000_photographs_give_a_row_each(small_model: Path, tmp_path: Path) -> None:
    cataract = _photographs(tmp_path / "data" / "cataract", 1500, seed=1)
    normal = _photographs(tmp_path / "data" / "normal", 1500, seed=2)
    batch = _cli("batch", str(tmp_path / "data"), "--out", str(tmp_path / "batch"), "--model", str(small_model))
    assert batch.returncode == 0, batch.stderr[-2000:]
    _, rows = read_csv(tmp_path / "batch" / "summary.csv")
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in cataract + normal)
    assert all(r["error"] == "" for r in rows)
    assert {r["prediction"] for r in rows} <= {"Cataract", "Normal"}
    assert all(r["attention"] for r in rows)  # every photograph had its attention checked
    assert "Traceback" not in batch.stderr
    assert len(list((tmp_path / "batch").glob("gradcam_*.jpg"))) == 3000
    audit = _cli("audit", str(tmp_path / "data"), "--out", str(tmp_path / "audit"), "--model", str(small_model),
                 "--json")
    assert audit.returncode == 0, audit.stderr[-2000:]
    _, audited = read_csv(tmp_path / "audit" / "audit.csv")
    assert sorted(r["file"] for r in audited) == sorted(f"cataract/{p.name}" for p in cataract) + sorted(
        f"normal/{p.name}" for p in normal)
    assert '"n": 3000' in audit.stdout


def test_batch_visualize_takes_more_than_a_thousand_paths(small_model: Path, tmp_path: Path) -> None:
    from gradcam_visualization import batch_visualize

    paths = _photographs(tmp_path / "photos", 1001)
    results = batch_visualize([str(p) for p in paths], output_dir=str(tmp_path / "out"), model_path=str(small_model))
    assert [r["image_path"] for r in results] == [str(p) for p in paths]
    assert all(r["error"] is None and Path(r["save_path"]).is_file() for r in results)


def test_a_killed_run_keeps_its_rows_and_resume_finishes_it_with_one_row_each(small_model: Path,
                                                                              tmp_path: Path) -> None:
    paths = _photographs(tmp_path / "photos", 400, seed=3)
    out = tmp_path / "out"
    summary = out / "summary.csv"
    process = subprocess.Popen([sys.executable, "-m", "components", "batch", str(tmp_path / "photos"), "--out",
                                str(out), "--model", str(small_model)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (summary.is_file() and summary.read_bytes().count(b"\r\n") > 120):
            assert process.poll() is None, "the run ended before it could be killed half-way"
            assert time.monotonic() < deadline, "the run wrote too few rows in 300 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    _, kept = read_csv(summary)
    assert 100 <= len(kept) < 400
    files = [r["file"] for r in kept]
    assert files == [str(p) for p in paths[: len(kept)]]  # in input order, none lost, none repeated
    resumed = _cli("batch", str(tmp_path / "photos"), "--out", str(out), "--model", str(small_model), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(kept)} file(s) already in summary.csv were skipped" in resumed.stderr
    _, rows = read_csv(summary)
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in paths)
    assert rows[: len(kept)] == kept  # the earlier rows stay as they were
