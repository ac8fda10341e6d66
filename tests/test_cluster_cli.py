"""The command-line side of cluster runs: exit codes, one-line errors, a batch on local:2, object storage rules."""

from __future__ import annotations

import argparse
import csv
import json
import socket

import pytest

from components import cli, cluster_cli

pytestmark = pytest.mark.timeout(300)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cataract-cam batch ...`` as the command line parses and runs it: exit code, stdout, stderr."""
    parser = argparse.ArgumentParser(prog="cataract-cam batch")
    cli._batch_args(parser)
    cli._add_model(parser)
    cluster_cli.add_cluster_options(parser, resume=True)
    args = parser.parse_args(argv)
    try:
        code = cluster_cli.run_batch(args) if cluster_cli.wants_cluster(args, args.inputs) else -1
    except cli.UsageError as exc:
        code = cli._fail(str(exc))
    out, err = capsys.readouterr()
    return code, out, err


def test_unreachable_scheduler_exit_2_one_line(tmp_path, capsys, images):
    from PIL import Image

    Image.fromarray(images[0]).save(tmp_path / "eye.png")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run([str(tmp_path / "eye.png"), "--out", str(tmp_path / "o"), "--dask",
                          f"tcp://127.0.0.1:{port}"], capsys)
    assert code == 2
    assert out == ""
    assert err == (f"cataract-cam: error: The Dask scheduler at tcp://127.0.0.1:{port} could not be reached "
                   "within 10 s.\n")


def test_object_storage_and_resume_need_a_cluster(tmp_path, capsys):
    code, _, err = run(["s3://bucket/photos", "--out", str(tmp_path)], capsys)
    assert (code, err.count("\n")) == (2, 1)
    assert "add --dask local:2" in err
    code, _, err = run([str(tmp_path), "--out", str(tmp_path), "--resume"], capsys)
    assert (code, err.count("\n")) == (2, 1)
    code, _, err = run([str(tmp_path), "--out", str(tmp_path), "--dask", "spark://x"], capsys)
    assert (code, err) == (2, "cataract-cam: error: Expected local:N or tcp://HOST:PORT for the cluster, got "
                              "'spark://x'.\n")
    # Without --dask and without object storage the local batch runs, unchanged.
    assert run([str(tmp_path), "--out", str(tmp_path)], capsys)[0] == -1


def test_batch_on_local_cluster_exit_3_and_rows(tmp_path, capsys, images, trained_checkpoint):
    from PIL import Image

    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"eye {i}.png")
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    out = tmp_path / "results"
    code, stdout, err = run([str(tmp_path), "--out", str(out), "--dask", "local:2", "--json",
                             "--model", str(trained_checkpoint)], capsys)
    assert code == 3
    assert err.strip().splitlines()[-1] == "cataract-cam: 1 of 4 file(s) failed"
    docs = json.loads(stdout)
    assert [d["error"] is not None for d in docs] == [True, False, False, False]  # bad.png sorts first
    with (out / "summary.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["file"] for r in rows] == [d["file"] for d in docs]
    assert all((out / f"gradcam_eye {i}.jpg").is_file() for i in range(3))
