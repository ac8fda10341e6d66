"""The review screen and the PDF it exports give the same finding, next step and reasons for the same eye."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import pypdf
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from components.explanation.cam import explain
from components.imaging import sha256_bytes
from components.imaging.loading import decode_image
from components.screening.decision import REFER, ROUTINE
from dashboard.keys import EyeScope
from models import load_classifier, save_checkpoint
from tests.dashboard.support import new_app, pdf_of, upload_quick
from tests.support import CSDI, seeded_model

PHOTO = CSDI / "LZ-OS.jpg"
_FINDING = re.compile(r"(Cataract suspected|No cataract detected)( \(indeterminate\))?")


def _off_fundus_photo(folder: Path) -> Path:
    """LZ-OS with a white block of camera text in its corner, where the test model's attention goes."""
    pixels = decode_image(PHOTO.read_bytes()).pixels.copy()
    h, w = pixels.shape[:2]
    cv2.rectangle(pixels, (0, 0), (w // 5, h // 6), (255, 255, 255), -1)
    cv2.putText(pixels, "2025", (10, h // 8), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 8)
    path = folder / "LZ-OS-text.png"
    Image.fromarray(pixels).save(path)
    return path


def _p_cataract(checkpoint: Path, photo: Path) -> float:
    clf = load_classifier(checkpoint)
    (ex,) = explain(clf, [decode_image(photo.read_bytes()).pixels])
    return float(ex.probabilities["Cataract"])


def _screen(at: AppTest) -> tuple[str, str, str]:
    """(finding, next step, the 'Because' sentence or '') as the review page shows them."""
    (headline,) = [m.value for m in at.markdown if m.value.startswith("Model finding:")]
    finding, step = re.findall(r"\*\*(.+?)\*\*", headline)
    (detail,) = [c.value for c in at.caption if "operating threshold" in c.value]
    because = re.search(r"Because: .+?\.(?= The final decision)", detail)
    return finding, step, because.group(0) if because else ""


def _report(pdf: bytes) -> tuple[set[str], str]:
    """The findings the PDF names (its next step's words taken out) and its whole text, whitespace collapsed."""
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    text = re.sub(r"\s+", " ", text)
    findings = {m.group(0) for m in _FINDING.finditer(text.replace(ROUTINE, ""))}
    return findings, text


# Thresholds placed around the eye's own probability p: below it, equal, inside the indeterminate
# band (0.1) on either side, and above it.
CASES = [
    ("p below the threshold", 0.2, "No cataract detected", ROUTINE),
    ("p in the band, below", 0.05, "No cataract detected (indeterminate)", ROUTINE),
    ("p equal to the threshold", 0.0, "Cataract suspected (indeterminate)", REFER),
    ("p in the band, above", -0.05, "Cataract suspected (indeterminate)", REFER),
    ("p above the threshold", -0.2, "Cataract suspected", REFER),
]


@pytest.mark.parametrize(("case", "offset", "finding", "step"), CASES, ids=[c[0] for c in CASES])
def test_screen_and_report_agree_around_the_threshold(env, checkpoint, tmp_path, monkeypatch, case, offset,
                                                      finding, step) -> None:
    p = _p_cataract(checkpoint, PHOTO)
    model = tmp_path / "threshold.pt"
    save_checkpoint(model, seeded_model(0), class_names=("Cataract", "Normal"), threshold=p + offset,
                    card={"name": "test-b0"})
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(model))
    at = upload_quick(new_app(), PHOTO.name, PHOTO.read_bytes())
    assert not at.error, [e.value for e in at.error]

    shown, shown_step, because = _screen(at)
    assert (shown, shown_step) == (finding, step)
    findings, text = _report(pdf_of(at))
    assert findings == {shown}
    assert (REFER in text, ROUTINE in text) == (step == REFER, step == ROUTINE)
    if because:
        assert because in text
    else:
        assert "Because:" not in text


@pytest.mark.parametrize(("threshold", "finding"), [(0.95, "No cataract detected"), (0.5, "Cataract suspected")])
def test_attention_off_the_fundus_refers_on_screen_and_in_the_report(env, checkpoint, tmp_path, monkeypatch,
                                                                      threshold, finding) -> None:
    photo = _off_fundus_photo(tmp_path)
    p = _p_cataract(checkpoint, photo)
    assert abs(p - threshold) >= 0.1  # outside the band: the finding is plain
    model = tmp_path / "threshold.pt"
    save_checkpoint(model, seeded_model(0), class_names=("Cataract", "Normal"), threshold=threshold,
                    card={"name": "test-b0"})
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(model))
    at = upload_quick(new_app(), photo.name, photo.read_bytes())
    sha = sha256_bytes(photo.read_bytes())
    at.selectbox(key=EyeScope(sha).key("quick_modality")).set_value("fundus").run()
    assert at.radio(key=EyeScope(sha).key("quick_eye")).value == "OS"
    badges = [m.value for m in at.markdown if "Attention:" in m.value]
    assert badges == [":red-badge[:material/center_focus_strong: Attention: off the fundus: black border or text]"]
    assert [w.value for w in at.warning if "attention lies off" in w.value] == [
        "The model's attention lies off the fundus field: the result may rest on something other than the "
        "fundus field. Check the photograph before relying on it."]

    shown, step, because = _screen(at)
    assert (shown, step) == (finding, REFER)
    assert "Left eye (OS): the model's attention lies off the fundus field" in because
    findings, text = _report(pdf_of(at))
    assert findings == {shown}
    assert REFER in text
    assert ROUTINE not in text
    assert because in text
