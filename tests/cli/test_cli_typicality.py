"""Typicality on the command line: summary.csv columns, explain --json, and "not available" without statistics."""

from __future__ import annotations

import csv
import json

from PIL import Image

from models.synthetic import render_eye
from tests.support import CSDI


def test_batch_summary_says_which_photographs_are_unlike_training(tmp_path, run_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in (970_001, 970_002):
        Image.fromarray(render_eye(seed).image).save(folder / f"synthetic_{seed}.png")
    (folder / "fundus.jpg").write_bytes((CSDI / "LZ-OD.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    code, _, err = run_cli(["batch", folder, "--out", tmp_path / "out"])  # the demo model ships statistics
    assert code == 3, err
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader((tmp_path / "out" / "summary.csv").open())}
    assert rows["fundus.jpg"]["unlike_training"] == "true"
    assert float(rows["fundus.jpg"]["ood_score"]) > float(rows["synthetic_970001.png"]["ood_score"])
    assert rows["synthetic_970001.png"]["unlike_training"] == "false"
    assert rows["synthetic_970002.png"]["unlike_training"] == "false"
    assert rows["broken.jpg"]["ood_score"] == rows["broken.jpg"]["unlike_training"] == ""


def test_checkpoint_without_statistics_says_not_available(tmp_path, run_cli, mlp_checkpoint, images):
    img = tmp_path / "eye.png"
    Image.fromarray(images[0]).save(img)
    code, out, err = run_cli(["explain", img, "--out", tmp_path / "o", "--json", "--model", mlp_checkpoint])
    assert code == 0, err
    assert json.loads(out)[0]["typicality"] == {"ood_score": "not available", "unlike_training": "not available",
                                                "threshold": "not available"}
    code, _, err = run_cli(["batch", img, "--out", tmp_path / "b", "--model", mlp_checkpoint])
    assert code == 0, err
    row = next(csv.DictReader((tmp_path / "b" / "summary.csv").open()))
    assert row["ood_score"] == row["unlike_training"] == "not available"
