"""The rest of the prototype's surface: ``overlay_heatmap`` with OpenCV's colormaps, and ``test_gradcam.py``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from components.explanation.overlay import COLORMAPS, OPENCV_COLORMAPS, blend, resize_map
from components.lens.attention import check
from components.screening.vocabulary import VERDICTS
from components.workflows.demo_patients import DEMO_PATIENTS
from gradcam_visualization import overlay_heatmap, visualize_gradcam
from tests.support import ROOT


@pytest.fixture(scope="module")
def photo_and_map(images) -> tuple[np.ndarray, np.ndarray]:
    image = images[0][:200, :180]  # not square, so the map must be resized to the photograph
    yy, xx = np.mgrid[0:7, 0:7]
    cam = np.exp(-((yy - 2.0) ** 2 + (xx - 4.0) ** 2) / 4.0).astype(np.float32)
    return image, cam


@pytest.mark.parametrize("constant", sorted(OPENCV_COLORMAPS))
def test_overlay_heatmap_with_an_opencv_constant_equals_blend_with_its_name(photo_and_map, constant) -> None:
    image, cam = photo_and_map
    got = overlay_heatmap(image, cam, alpha=0.35, colormap=constant)
    np.testing.assert_array_equal(got, blend(image, cam, alpha=0.35, colormap=OPENCV_COLORMAPS[constant]))


def test_overlay_heatmap_hot_and_the_default_jet(photo_and_map) -> None:
    image, cam = photo_and_map
    np.testing.assert_array_equal(overlay_heatmap(image, cam, colormap=cv2.COLORMAP_HOT),
                                  blend(image, cam, colormap="hot"))
    np.testing.assert_array_equal(overlay_heatmap(image, cam), blend(image, cam, colormap="jet"))
    for name in COLORMAPS:  # the names the dashboard offers work too
        np.testing.assert_array_equal(overlay_heatmap(image, cam, 0.6, name), blend(image, cam, alpha=0.6,
                                                                                  colormap=name))


def test_overlay_heatmap_with_a_colormap_only_opencv_has_is_rgb(photo_and_map) -> None:
    # Autumn runs red (0) to yellow (1): OpenCV's table is BGR, the result must be RGB.
    image, cam = photo_and_map
    big = resize_map(cam, (image.shape[1], image.shape[0]))
    index = np.rint(big * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(index, cv2.COLORMAP_AUTUMN)
    want = np.rint(image.astype(np.float32) * np.float32(0.5) + bgr[..., ::-1].astype(np.float32) * np.float32(0.5))
    got = overlay_heatmap(image, cam, alpha=0.5, colormap=cv2.COLORMAP_AUTUMN)
    np.testing.assert_array_equal(got, want.astype(np.uint8))
    pure = overlay_heatmap(image, np.ones((7, 7), np.float32), alpha=1.0, colormap=cv2.COLORMAP_AUTUMN)
    assert tuple(pure[0, 0]) == (255, 255, 0)  # yellow in RGB, not cyan


def test_overlay_heatmap_refuses_unknown_colormaps(photo_and_map) -> None:
    image, cam = photo_and_map
    with pytest.raises(ValueError, match="Unknown OpenCV colormap 999"):
        overlay_heatmap(image, cam, colormap=999)
    with pytest.raises(ValueError, match="Unknown colormap 'rainbowish'"):
        overlay_heatmap(image, cam, colormap="rainbowish")


def test_the_prototype_test_script_runs_from_a_clean_folder(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, str(ROOT / "test_gradcam.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(DEMO-\d{3}_O[DS])\s+(\w+)\s+(\w+)\s+([\d.]+)%\s+(.+)$", run.stdout, re.M)}
    names = [f"{p.pseudo_id}_{eye}" for p in DEMO_PATIENTS for eye in ("OD", "OS")]
    assert sorted(rows) == sorted(names)
    saved = sorted(p.name for p in (tmp_path / "gradcam_results").iterdir())
    assert saved == sorted(f"gradcam_{n}.jpg" for n in names)
    assert "Demonstration model" in run.stdout
    # Each printed line is what the API and the attention check give for that photograph.
    patient = DEMO_PATIENTS[2]  # mature cataract in both eyes
    image = patient.os.render("OS", patient.patient_seed)
    photo = tmp_path / "eye.png"
    from PIL import Image

    Image.fromarray(image).save(photo)
    want = visualize_gradcam(photo, save_path=tmp_path / "check.jpg", show=False)
    truth, prediction, confidence, verdict = rows[f"{patient.pseudo_id}_OS"]
    assert (truth, prediction) == ("cataract", want["prediction"])
    assert float(confidence) == pytest.approx(100 * want["confidence"], abs=0.051)
    assert verdict == check(image, want["cam"], modality="external").verdict
    assert {r[3] for r in rows.values()} <= set(VERDICTS)
