"""``cataract-cam report``: the engine runs on the given eyes and the PDF says what it found."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from components.cli import main
from components.screening.vocabulary import MODALITIES, MODALITY_LABELS, VERDICT_LABELS, VERDICTS
from tests.support import CSDI


def _pdf_text(path: Path) -> str:
    reader = PdfReader(io.BytesIO(path.read_bytes()))
    return "\n".join(page.extract_text() for page in reader.pages)


def _verdict(text: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith("Verdict: ")]
    return line.removeprefix("Verdict: ")


def test_report_command_writes_a_pdf_with_an_ungradable_eye(tmp_path, capsys, mlp_checkpoint, images, csdi_jpeg):
    od = tmp_path / "right.png"
    Image.fromarray(images[2]).save(od)
    bad = tmp_path / "left.jpg"
    bad.write_bytes(csdi_jpeg.read_bytes()[:4000])
    out = tmp_path / "reports"
    out.mkdir()
    code = main(["report", "--patient-id", "P/../007", "--name", "<i>Ana</i> & Bo", "--od", str(od),
                 "--os", str(bad), "--reviewer", "Dr. Q", "--notes", "Check again in 6 months.",
                 "--out", str(out), "--model", str(mlp_checkpoint)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (pdf_path,) = out.iterdir()
    assert ".." not in pdf_path.name
    assert "/" not in pdf_path.name
    assert pdf_path.suffix == ".pdf"
    reader = PdfReader(io.BytesIO(pdf_path.read_bytes()))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "P/../007" in text
    assert "<i>Ana</i> & Bo" in text
    assert text.index("Right eye (OD)") < text.index("Left eye (OS)")
    assert "Refer to an ophthalmologist" in text  # the unreadable left eye is ungradable
    assert "Check again in 6 months." in text
    assert "Dr. Q" in text
    assert text.count("Attention check") == 1  # verdict and figures for the readable eye only
    assert "Ana" not in str(reader.metadata)


def test_report_command_needs_an_eye(tmp_path, capsys, mlp_checkpoint):
    code = main(["report", "--patient-id", "P1", "--out", str(tmp_path / "r.pdf"), "--model", str(mlp_checkpoint)])
    assert code == 2
    assert "--od IMG or --os IMG" in capsys.readouterr().err


# The fundus check's own verdicts: every one but "diffuse" is worded for the fundus field.
FUNDUS_ONLY_VERDICTS = set(VERDICT_LABELS["fundus"].values()) - set(VERDICTS)


def test_report_tells_a_real_fundus_photograph_from_an_external_one(tmp_path, run_cli, mlp_checkpoint):
    """Without --modality the photograph's kind is detected: a fundus gets the fundus field's check."""
    code, _, err = run_cli(["report", "--patient-id", "F-1", "--od", CSDI / "LZ-OD.jpg", "--out", tmp_path / "f.pdf",
                            "--model", mlp_checkpoint])
    assert code == 0, err
    text = _pdf_text(tmp_path / "f.pdf")
    assert MODALITY_LABELS["fundus"] in text
    assert MODALITY_LABELS["external"] not in text
    assert _verdict(text) in FUNDUS_ONLY_VERDICTS
    assert "lens not found" not in text


@pytest.mark.parametrize("modality", ["external", "slit_lamp"])
def test_report_modality_option_overrides_the_detection(tmp_path, run_cli, mlp_checkpoint, modality):
    code, _, err = run_cli(["report", "--patient-id", "F-1", "--od", CSDI / "LZ-OD.jpg", "--out", tmp_path / "e.pdf",
                            "--model", mlp_checkpoint, "--modality", modality])
    assert code == 0, err
    text = _pdf_text(tmp_path / "e.pdf")
    assert MODALITY_LABELS[modality] in text
    assert MODALITY_LABELS["fundus"] not in text
    assert _verdict(text) in VERDICTS  # the lens check's words, as for any photograph of the front of the eye


def test_report_modality_choices_are_the_vocabulary_s(tmp_path, capsys, mlp_checkpoint, images):
    Image.fromarray(images[0]).save(tmp_path / "x.png")
    with pytest.raises(SystemExit) as exited:
        main(["report", "--patient-id", "P1", "--od", str(tmp_path / "x.png"), "--out", str(tmp_path / "r.pdf"),
              "--modality", "oct", "--model", str(mlp_checkpoint)])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --modality: invalid choice: 'oct'" in last
    assert [m for m in ("external", "slit_lamp", "fundus") if m in last] == list(MODALITIES)
