"""``batch`` and ``audit`` with ``--dask``: exit codes, one-line errors, the same results as without it."""

from __future__ import annotations

import csv
import json
import re
import socket

import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(300)


def test_unreachable_scheduler_exit_2_one_line(run_cli, tmp_path, images):
    (tmp_path / "set" / "normal").mkdir(parents=True)
    Image.fromarray(images[0]).save(tmp_path / "set" / "normal" / "eye.png")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for command in (["batch", tmp_path / "set"], ["audit", tmp_path / "set"]):
        code, out, err = run_cli([*command, "--out", tmp_path / "o", "--dask", f"tcp://127.0.0.1:{port}"])
        assert code == 2
        assert out == ""
        assert err == (f"cataract-cam: error: The Dask scheduler at tcp://127.0.0.1:{port} could not be reached "
                       "within 10 s.\n")


def test_object_storage_and_resume_need_a_cluster(run_cli, tmp_path):
    code, _, err = run_cli(["batch", "s3://bucket/photos", "--out", tmp_path])
    assert (code, err.count("\n")) == (2, 1)
    assert "add --dask local:2" in err
    code, _, err = run_cli(["audit", tmp_path, "--out", "s3://bucket/audit"])
    assert (code, err.count("\n")) == (2, 1)
    code, _, err = run_cli(["batch", tmp_path, "--out", tmp_path, "--resume"])
    assert (code, err.count("\n")) == (2, 1)
    code, _, err = run_cli(["batch", tmp_path, "--out", tmp_path, "--dask", "spark://x"])
    assert (code, err) == (2, "cataract-cam: error: Expected local:N or tcp://HOST:PORT for the cluster, got "
                              "'spark://x'.\n")
    code, _, err = run_cli(["batch", tmp_path, "--out", tmp_path, "--dask", "local:2", "--s3-endpoint", "x:9"])
    assert (code, err) == (2, "cataract-cam: error: The S3 endpoint must start with http:// or https://.\n")


def test_batch_with_dask_same_rows_and_exit_3(run_cli, tmp_path, images, trained_checkpoint):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(images[i]).save(photos / f"eye {i}.png")
    (photos / "bad.png").write_bytes(b"not a picture")
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    code_local, out_local, _ = run_cli(["batch", photos, "--out", local, "--json", "--model", trained_checkpoint])
    code, stdout, err = run_cli(["batch", photos, "--out", cluster, "--dask", "local:2", "--json",
                                 "--model", trained_checkpoint])
    assert code == code_local == 3
    assert err.strip().splitlines()[-1] == "cataract-cam: 1 of 4 file(s) failed"
    docs, docs_local = json.loads(stdout), json.loads(out_local)
    assert [d["file"] for d in docs] == [d["file"] for d in docs_local]
    for d, ref in zip(docs, docs_local, strict=True):
        assert (d["prediction"], d["error"]) == (ref["prediction"], ref["error"])
        assert d["panel"] == (ref["panel"].replace(str(local), str(cluster)) if ref["panel"] else None)
        if ref["confidence"] is not None:
            assert d["confidence"] == pytest.approx(ref["confidence"], abs=1e-5)
    with (cluster / "summary.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [d["file"] for d in docs]
    # Everything is done already: --resume runs nothing and keeps every row.
    code, stdout, _ = run_cli(["batch", photos, "--out", cluster, "--dask", "local:2", "--resume", "--json",
                               "--model", trained_checkpoint])
    assert (code, json.loads(stdout)) == (0, [])
    with (cluster / "summary.csv").open(encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == rows
    # Without --json nothing is kept but the counts: the same summary, the same failure line.
    code, stdout, err = run_cli(["batch", photos, "--out", tmp_path / "plain", "--dask", "local:2",
                                 "--model", trained_checkpoint])
    assert (code, err.strip().splitlines()[-1]) == (3, "cataract-cam: 1 of 4 file(s) failed")
    with (tmp_path / "plain" / "summary.csv").open(encoding="utf-8") as handle:
        assert [r["file"] for r in csv.DictReader(handle)] == [r["file"] for r in rows]


def test_audit_with_dask_same_summary(run_cli, tmp_path, trained_checkpoint):
    from models.synthetic import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, 10, 31)
    (data / "normal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code_local, out_local, _ = run_cli(["audit", data, "--out", tmp_path / "a", "--json",
                                        "--model", trained_checkpoint])
    code, stdout, _ = run_cli(["audit", data, "--out", tmp_path / "b", "--json", "--dask", "local:2",
                               "--model", trained_checkpoint])
    assert code == code_local == 0
    assert json.loads(stdout) == json.loads(out_local)
    assert (tmp_path / "b" / "gallery.html").is_file()
    local_csv = (tmp_path / "a" / "audit.csv").read_text(encoding="utf-8").splitlines()
    cluster_csv = (tmp_path / "b" / "audit.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[:2] for line in cluster_csv] == [line.split(",")[:2] for line in local_csv]
    # The gallery streamed from the cluster's rows shows the same images in the same order.
    shown = [re.findall(r"<b>([^<]+)</b>", (tmp_path / d / "gallery.html").read_text(encoding="utf-8"))
             for d in ("a", "b")]
    assert shown[0] == shown[1]
    assert shown[0]
    assert not list((tmp_path / "b").glob(".gallery-*"))  # the working folder is gone
