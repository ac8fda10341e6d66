"""Installable: `pip install .` (no -e, no --no-deps) into an empty venv gives a `cataract-cam` that explains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from tests.support import CSDI, ROOT

pytestmark = pytest.mark.timeout(1200)


def test_pip_install_into_an_empty_venv_explains_a_photograph(tmp_path: Path) -> None:
    # What a user clones: the tracked files only, in a folder of their own.
    source = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source)], capture_output=True,
                                   text=True, timeout=1000, check=False)
        assert installed.returncode == 0, installed.stderr[-3000:]
        # Only what pyproject.toml declares came with it: no Streamlit, no Dask (those are extras).
        listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json"], capture_output=True,
                                text=True, check=True).stdout
        names = {p["name"].lower() for p in json.loads(listed)}
        assert {"torch", "opencv-python-headless", "reportlab", "cataract-cam"} <= names
        assert not names & {"streamlit", "distributed", "torchvision", "scipy"}
        out = tmp_path / "out"
        done = subprocess.run([str(venv / "bin" / "cataract-cam"), "explain", str(CSDI / "LZ-OD.jpg"), "--out",
                               str(out), "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        (item,) = json.loads(done.stdout)
        assert item["error"] is None
        assert item["prediction"] in ("Cataract", "Normal")
        assert abs(sum(item["probabilities"].values()) - 1) < 1e-5
        with Image.open(out / "gradcam_LZ-OD.jpg") as panel:
            assert panel.width > 3 * panel.height  # Original | Heatmap | Overlay, side by side
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB: never left for pytest's folders to keep


def test_the_extras_name_what_the_rest_of_the_software_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [name for names in project["optional-dependencies"].values() for name in names]
    declared = " ".join([*project["dependencies"], *extras]).lower()
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pinned = [line.split("==")[0].split("[")[0].lower() for line in lines if "==" in line and not line.startswith("#")]
    # Every pinned runtime requirement is declared somewhere, so `pip install .[all]` gives what `make` gives.
    assert [name for name in pinned if name not in declared and name != "distributed"] == []
