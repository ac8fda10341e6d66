"""``cataract-cam report``: the engine runs on the given eyes and the PDF says what it found."""

from __future__ import annotations

import io

from PIL import Image
from pypdf import PdfReader

from components.cli import main


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
