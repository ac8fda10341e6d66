"""The prototype's API on a real CSDI photograph: ``visualize_gradcam`` and ``batch_visualize``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.imaging.loading import decode_image
from gradcam_visualization import batch_visualize, visualize_gradcam


def test_visualize_gradcam_on_a_real_jpeg_with_the_prototype_checkpoint(tmp_path, monkeypatch, csdi_jpeg,
                                                                        mlp_checkpoint):
    monkeypatch.chdir(tmp_path)
    result = visualize_gradcam(str(csdi_jpeg), model_path=str(mlp_checkpoint), show=False)
    assert {"prediction", "confidence", "probabilities", "cam", "heatmap", "overlay", "save_path"} <= set(result)
    w, h = Image.open(csdi_jpeg).size
    assert (w, h) == (2734, 1822)
    assert result["cam"].shape == (h, w)
    assert result["cam"].dtype.kind == "f"
    assert result["cam"].min() >= 0.0
    assert result["cam"].max() <= 1.0
    assert result["cam"].max() > 0.9
    assert result["heatmap"].shape == result["overlay"].shape == (h, w, 3)
    assert result["overlay"].dtype == np.uint8
    assert result["prediction"] in ("Cataract", "Normal")
    assert 0.5 <= result["confidence"] <= 1.0
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert result["confidence"] == pytest.approx(result["probabilities"][result["prediction"]])
    saved = tmp_path / f"gradcam_{csdi_jpeg.stem}.jpg"
    assert Path(result["save_path"]) == saved
    assert saved.is_file()
    panel = Image.open(saved)
    assert panel.width > 3 * 512
    assert not panel.getexif()
    # The overlay is the photograph blended with the heatmap at alpha 0.5, pixel for pixel.
    image = decode_image(csdi_jpeg).pixels.astype(np.float32)
    expected = np.rint(0.5 * image + 0.5 * result["heatmap"].astype(np.float32))
    assert np.abs(expected - result["overlay"]).max() <= 1


def test_visualize_gradcam_without_a_model_names_the_argument(tmp_path, monkeypatch, csdi_jpeg):
    import models.classifier as mc

    monkeypatch.setattr(mc, "DEMO_MODEL_PATH", tmp_path / "absent.pt")
    with pytest.raises(mc.CheckpointError, match="model_path"):
        visualize_gradcam(str(csdi_jpeg), show=False)


def test_batch_visualize_reports_bad_files_and_keeps_going(tmp_path, csdi_jpeg, mlp_checkpoint, images):
    small = tmp_path / "small.png"
    Image.fromarray(images[0]).save(small)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(csdi_jpeg.read_bytes()[:5000])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    out = tmp_path / "results"
    results = batch_visualize([small, broken, text, csdi_jpeg], output_dir=out, model_path=mlp_checkpoint)
    assert [Path(r["image_path"]).name for r in results] == ["small.png", "broken.jpg", "notes.jpg", csdi_jpeg.name]
    assert results[0]["error"] is None
    assert results[3]["error"] is None
    assert results[1]["error"]
    assert results[2]["error"]
    for r in results[1:3]:
        assert "\n" not in r["error"]
        assert "broken" not in r["error"]
        assert r["prediction"] is None
    assert sorted(p.name for p in out.iterdir()) == ["gradcam_DLY-OD.jpg", "gradcam_small.jpg"]
