"""No traceback, ever, from the command line: every subcommand meets bad input with one line and its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components.cli import COMMANDS, main
from tests.support import CSDI, ROOT

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there
DOCUMENTED = {0, 1, 2, 3, 130}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """An empty folder, a folder of non-images, a file that is not a checkpoint, a folder of labelled junk."""
    root = tmp_path_factory.mktemp("bad_input")
    empty = root / "empty"
    empty.mkdir()
    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.jpg").write_text("not a photograph")
    (junk / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing
    model = root / "model.pt"
    model.write_text("not a checkpoint")
    labelled = root / "labelled"
    for label in ("cataract", "normal"):
        (labelled / label).mkdir(parents=True)
        (labelled / label / "x.jpg").write_text("junk")
    return {"empty": empty, "junk": junk, "model": model, "labelled": labelled, "missing": root / "missing.jpg",
            "out": root / "out", "root": root}


def _cases(b: dict[str, Path]) -> list[tuple[str, list[str]]]:
    photo = str(CSDI / "LZ-OD.jpg")
    out = str(b["out"])
    return [
        ("explain", ["explain", str(b["missing"]), "--out", out]),
        ("explain", ["explain", str(b["junk"] / "notes.jpg"), "--out", out, "--json"]),
        ("explain", ["explain", photo, "--model", str(b["model"]), "--out", out]),
        ("batch", ["batch", str(b["empty"]), "--out", out]),
        ("batch", ["batch", str(b["junk"]), "--out", out]),
        ("batch", ["batch", photo, "--out", str(CSDI / "LZ-OD.jpg")]),  # --out is a file
        ("report", ["report", "--patient-id", "..", "--od", photo, "--out", out + "/r.pdf"]),
        ("report", ["report", "--patient-id", "P-1", "--od", str(b["missing"]), "--out", out + "/r.pdf"]),
        ("synth", ["synth", "--n", "-3", "--out", out]),
        ("train", ["train", str(b["empty"]), "--out", out + "/m.pt"]),
        ("train", ["train", str(b["labelled"]), "--out", out + "/m.pt", "--model", str(b["model"])]),
        ("evaluate", ["evaluate", str(b["empty"])]),
        ("evaluate", ["evaluate", str(b["labelled"]), "--model", str(b["model"])]),
        ("audit", ["audit", str(b["empty"]), "--out", out]),
        ("audit", ["audit", str(b["missing"]), "--out", out]),
        ("compare", ["compare", photo, "--model", str(b["model"]), "--model", str(b["model"])]),
        ("compare", ["compare", str(b["missing"])]),
        ("pull", ["pull", "--dicomweb", UNREACHABLE + "/dicom-web", "--study", "1.2.3", "--out", out]),
        ("send", ["send", str(b["empty"]), "--dicomweb", UNREACHABLE + "/dicom-web"]),
        ("send", ["send", str(b["junk"]), "--dimse", "PACS@127.0.0.1:9"]),
        ("export", ["export", "--patient-id", "NOBODY", "--fhir", out + "/b.json"]),
        ("typicality", ["typicality", "--reference", str(b["empty"])]),
        ("typicality", ["typicality", "--model", str(b["model"]), "--reference", str(b["junk"])]),
        ("dashboard", ["dashboard", "--model", str(b["missing"])]),
        ("records", ["records", "restore", "--from", str(b["empty"])]),
        ("records", ["records", "export", "--patient", "NOBODY", "--out", out + "/export"]),
        ("config", ["config", "--model", str(b["missing"])]),
        ("check", ["check", "--timeout", "0"]),
        ("check", ["check", "--timeout", "1", "--json"]),
    ]


def test_every_subcommand_is_covered(bad: dict[str, Path]) -> None:
    assert {name for name, _ in _cases(bad)} == {c.name for c in COMMANDS}


def test_bad_input_is_one_line_and_a_documented_exit_code(bad: dict[str, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("CATARACT_CAM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CATARACT_CAM_DB_URL", raising=False)
    monkeypatch.delenv("CATARACT_CAM_DEBUG", raising=False)
    problems = []
    for name, argv in _cases(bad):
        try:
            code = main(argv)
        except SystemExit as exited:  # argparse refuses a malformed command line with 2
            code = exited.code
        except BaseException as error:  # anything else would have been a traceback
            problems.append(f"{name} {argv[1:]}: raised {type(error).__name__}: {error}")
            continue
        captured = capsys.readouterr()
        if "Traceback" in captured.err + captured.out:
            problems.append(f"{name}: printed a traceback")
        if code not in DOCUMENTED:
            problems.append(f"{name} {argv[1:]}: exit {code}")
        if code not in (0, 3):
            lines = [line for line in captured.err.splitlines() if line.startswith("cataract-cam: error:")]
            if len(lines) != 1 and "usage:" not in captured.err:
                problems.append(f"{name}: expected one error line, got {captured.err!r}")
    assert problems == []


def test_a_closed_pipe_and_an_unreachable_database_end_quietly(bad: dict[str, Path], tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CATARACT_CAM_DATA": str(tmp_path / "data")}
    # `... --json | head -c 10`: the reader leaves before the document is written.
    piped = subprocess.run(f"{sys.executable} -m components explain {CSDI / 'LZ-OD.jpg'} --out {tmp_path} --json "
                           "| head -c 10", shell=True, capture_output=True, text=True, env=environ, timeout=300,
                           check=False)
    assert "Traceback" not in piped.stderr
    assert "BrokenPipeError" not in piped.stderr
    database = subprocess.run([sys.executable, "-m", "components", "records", "verify"], capture_output=True,
                              text=True, timeout=120, check=False,
                              env={**environ, "CATARACT_CAM_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"})
    assert database.returncode == 2
    assert "Traceback" not in database.stderr
    assert len(database.stderr.strip().splitlines()) == 1
