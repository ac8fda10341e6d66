"""``cataract-cam explain`` and ``batch``: outputs, summary rows, exit codes 0/2/3, ``python -m components``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.support import ROOT


def test_cli_explain_json_and_exit_0(tmp_path, run_cli, mlp_checkpoint, images):
    img = tmp_path / "eye_OD.png"
    Image.fromarray(images[1]).save(img)
    code, out, err = run_cli(["explain", img, "--out", tmp_path / "o", "--json", "--model", mlp_checkpoint,
                              "--method", "layercam", "--colormap", "turbo", "--alpha", "0.3"])
    assert code == 0, err
    doc = json.loads(out)  # stdout is exactly one JSON document
    assert doc[0]["method"] == "layercam"
    assert doc[0]["error"] is None
    assert Path(doc[0]["panel"]).name == "gradcam_eye_OD.jpg"
    assert Path(doc[0]["panel"]).is_file()


def test_cli_batch_summary_rows_for_every_input_and_exit_3(tmp_path, run_cli, mlp_checkpoint, images, csdi_jpeg):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(images[i]).save(folder / "sub" / f"eye{i}.png")
    (folder / "corrupt.jpg").write_bytes(csdi_jpeg.read_bytes()[:3000])
    (folder / "readme.txt").write_text("ignored: not an image suffix inside a folder")
    hostile = tmp_path / "payload.jpg"
    hostile.write_bytes(b"<script>alert(1)</script>" * 10)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 10000)).save(bomb)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["batch", folder, hostile, bomb, tmp_path / "missing.jpg", "--out", out,
                                 "--model", mlp_checkpoint])
    assert code == 3
    assert stdout == ""
    rows = list(csv.DictReader((out / "summary.csv").open()))
    names = [Path(r["file"]).name for r in rows]
    assert sorted(names) == sorted(["corrupt.jpg", "eye0.png", "eye1.png", "eye2.png", "payload.jpg", "bomb.png",
                                    "missing.jpg"])
    by_name = {Path(r["file"]).name: r for r in rows}
    for bad in ("corrupt.jpg", "payload.jpg", "bomb.png", "missing.jpg"):
        assert by_name[bad]["error"]
        assert by_name[bad]["prediction"] == ""
        assert "<script>" not in by_name[bad]["error"]
    assert "exceeds the limit" in by_name["bomb.png"]["error"]
    for good in ("eye0.png", "eye1.png", "eye2.png"):
        row = by_name[good]
        assert row["error"] == ""
        assert row["prediction"] in ("Cataract", "Normal")
        assert float(row["p_Cataract"]) + float(row["p_Normal"]) == pytest.approx(1.0, abs=1e-5)
        assert {"file", "prediction", "confidence", "p_Cataract", "p_Normal", "target", "method", "error"} <= set(row)
    assert "4 of 7 file(s) failed" in err


def test_cli_batch_all_good_exits_0(tmp_path, run_cli, mlp_checkpoint, images):
    for i in range(2):
        Image.fromarray(images[i]).save(tmp_path / f"e{i}.png")
    code, _, err = run_cli(["batch", tmp_path / "e0.png", tmp_path / "e1.png", "--out", tmp_path / "o",
                            "--model", mlp_checkpoint])
    assert code == 0, err
    assert len(list(csv.DictReader((tmp_path / "o" / "summary.csv").open()))) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["explain", "x.png", "--alpha", "2"], "--alpha must lie between 0 and 1"),
    (["explain", "x.png", "--target", "Glaucoma"], "Unknown target class 'Glaucoma'"),
    (["batch", "nowhere/", "--out", "o"], None),
])
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, run_cli, mlp_checkpoint, images, args,
                                               message):
    Image.fromarray(images[0]).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli([*args, "--model", mlp_checkpoint])
    if message is None:  # a missing input is a failed row, not a usage error
        assert code == 3
        return
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_cli_hostile_checkpoint_exit_2(tmp_path, run_cli, images):
    import torch

    from tests.support import seeded_model

    torch.save(seeded_model(0, calibrate=False), tmp_path / "whole.pt")
    Image.fromarray(images[0]).save(tmp_path / "x.png")
    code, _, err = run_cli(["explain", tmp_path / "x.png", "--out", tmp_path, "--model", tmp_path / "whole.pt"])
    assert code == 2
    assert err.count("\n") == 1
    assert "not loaded" in err


def test_python_m_components_and_argparse_usage_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "components", "batch"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "--out" in done.stderr
    assert done.stdout == ""
    helped = subprocess.run([sys.executable, "-m", "components", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0
    for command in ("explain", "batch", "report", "synth", "train", "evaluate", "audit", "compare", "dashboard"):
        assert command in helped.stdout
