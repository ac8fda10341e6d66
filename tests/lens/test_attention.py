"""The attention check: metrics worked out by hand, and verdicts on maps placed on synthetic and fundus images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from components.imaging.loading import decode_image
from components.lens import attention as A

# ------------------------------------------------------------------ metrics, by hand


def test_energy_share_by_hand():
    cam = np.array([[0, 1, 0, 0],
                    [0, 2, 1, 0],
                    [0, 0, 0, 0],
                    [0, 0, 0, 4]], float)
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # holds 0 + 1 + 0 + 2 = 3 of the total 8
    assert A.energy_share(cam, mask) == pytest.approx(3 / 8)
    assert A.energy_share(cam, ~mask) == pytest.approx(5 / 8)
    assert A.energy_share(np.zeros((4, 4)), mask) == 0.0


def test_pointing_game_by_hand():
    cam = np.array([[0, 1, 0, 0],
                    [0, 2, 1, 0],
                    [0, 0, 0, 0],
                    [0, 0, 0, 4]], float)
    corner = np.zeros((4, 4), bool)
    corner[3, 3] = True
    assert A.pointing_game(cam, corner) is True
    assert A.pointing_game(cam, ~corner) is False
    assert A.peak(cam) == (3, 3)
    assert A.pointing_game(np.zeros((4, 4)), corner) is False  # an empty map points nowhere
    # A plateau: the peak is the plateau cell nearest its centroid.
    plateau = np.zeros((5, 5))
    plateau[1:4, 1:4] = 1.0
    assert A.peak(plateau) == (2, 2)


def test_border_share_by_hand():
    # 10 x 10 with a 10% band: a one-pixel ring of 36 pixels.
    ring = A.border_mask((10, 10))
    assert ring.sum() == 36
    assert not ring[1:9, 1:9].any()
    assert A.border_share(np.ones((10, 10))) == pytest.approx(0.36)
    cam = np.ones((10, 10))
    cam[ring] = 2.0  # ring 72, inside 64
    assert A.border_share(cam) == pytest.approx(72 / 136)
    # 20 x 30: bands of 2 rows and 3 columns.
    band = A.border_mask((20, 30))
    assert band.sum() == 20 * 30 - 16 * 24


def test_spread_by_hand():
    # Sorted 4, 3, 2, 1 (total 10): half is reached with the first two of four pixels.
    assert A.spread(np.array([[1.0, 4.0], [2.0, 3.0]])) == pytest.approx(0.5)
    assert A.spread(np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.25)
    assert A.spread(np.ones((10, 10))) == pytest.approx(0.5)
    assert A.spread(np.zeros((3, 3))) == 1.0


def test_iou_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert A.iou(a, b) == pytest.approx(1 / 7)
    assert A.iou(a, a) == 1.0
    assert A.iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_metric_input_errors():
    with pytest.raises(A.AttentionError, match="shape"):
        A.energy_share(np.ones((4, 4)), np.ones((3, 4), bool))
    with pytest.raises(A.AttentionError, match="negative"):
        A.spread(-np.ones((4, 4)))
    with pytest.raises(A.AttentionError, match="NaN"):
        A.border_share(np.full((4, 4), np.nan))
    with pytest.raises(A.AttentionError, match="band"):
        A.border_mask((4, 4), 0.5)
    with pytest.raises(A.AttentionError, match="modality"):
        A.find_lens(np.zeros((64, 64, 3), np.uint8), "x-ray")


# ------------------------------------------------------------------------ verdicts


@pytest.fixture(scope="module")
def eyes():
    from models.synthetic import render_eye

    # Tuning seeds: these tests pin behaviour, the benchmark reports on fresh seeds.
    return [render_eye(s) for s in (1002, 1003)]


def _bump(shape: tuple[int, int], x: float, y: float, sigma_cells: float = 0.7, n: int = 7) -> np.ndarray:
    """A Grad-CAM-like map: a 7x7 grid with a Gaussian bump at image point (x, y), upsampled to 224."""
    h, w = shape
    centres = (np.arange(n) + 0.5) / n
    gx, gy = np.meshgrid(centres, centres)
    grid = np.exp(-((gx - x / w) ** 2 + (gy - y / h) ** 2) / (2 * (sigma_cells / n) ** 2)).astype(np.float32)
    cam = cv2.resize(grid, (224, 224), interpolation=cv2.INTER_LINEAR)
    return (cam - cam.min()) / (cam.max() - cam.min())


def test_verdicts_for_maps_placed_by_hand(eyes):
    eye = eyes[0]
    h, w = eye.image.shape[:2]
    region = A.find_lens(eye.image)
    cx, cy = eye.meta["pupil_center"]
    on = A.check(eye.image, _bump((h, w), cx, cy), masks=eye.masks, region=region)
    assert on.verdict == "on lens"
    assert on.figures["peak_in_lens"] is True
    assert on.figures["energy_in_lens_zone"] >= A.ON_LENS_SHARE
    assert on.figures["lens_iou"] >= 0.8

    corner = A.check(eye.image, _bump((h, w), 0.03 * w, 0.03 * h), masks=eye.masks, region=region)
    assert corner.verdict == "off lens: image border"
    assert corner.off_lens
    assert corner.figures["energy_in_border"] >= A.BORDER_SHARE

    # On the upper lid, above the iris: skin by the mask, well inside the border band.
    ys, xs = np.nonzero(eye.masks["skin"])
    lid = (ys > 0.22 * h) & (ys < cy - eye.meta["iris_radius"]) & (np.abs(xs - cx) < 0.1 * w)
    i = np.flatnonzero(lid)[lid.sum() // 2]
    skin = A.check(eye.image, _bump((h, w), xs[i], ys[i]), masks=eye.masks, region=region)
    assert skin.verdict == "off lens: lids or skin"
    assert skin.off_lens

    flat = A.check(eye.image, np.ones((224, 224), np.float32), region=region)
    assert flat.verdict == "diffuse"
    assert flat.figures["spread"] == pytest.approx(0.5, abs=0.01)
    assert A.check(eye.image, np.zeros((224, 224), np.float32), region=region).verdict == "diffuse"


def test_border_attention_needs_no_lens():
    blank = np.full((384, 512, 3), 120, np.uint8)
    corner = A.check(blank, _bump((384, 512), 10, 10), modality="external")
    assert corner.verdict == "off lens: image border"
    centre = A.check(blank, _bump((384, 512), 256, 192), modality="external")
    assert centre.verdict == "lens not found"
    assert not centre.region.found


def test_fundus_verdicts_and_labels(csdi_jpeg):
    image = decode_image(csdi_jpeg, min_side=512).pixels
    h, w = image.shape[:2]
    inside = A.check(image, _bump((h, w), w / 2, h / 2, sigma_cells=1.2))
    assert inside.modality == "fundus"
    assert inside.verdict == "on lens"
    assert inside.label == "inside the fundus"
    text = A.check(image, _bump((h, w), 0.02 * w, 0.02 * h))
    assert text.verdict == "off lens: image border"
    assert text.label == "off the fundus: black border or text"


def test_result_is_json_ready_and_described(eyes):
    eye = eyes[1]
    result = A.check(eye.image, _bump(eye.image.shape[:2], *eye.meta["pupil_center"]), masks=eye.masks)
    doc = json.loads(json.dumps(result.as_dict()))
    assert doc["verdict"] == result.verdict
    assert doc["figures"]["lens_iou"] == result.figures["lens_iou"]
    rows = dict(result.rows())
    assert rows["Strongest point on the lens"] == "yes"
    assert rows["Attention in the outer 10% border"].endswith("%")
    assert set(A.VERDICTS) == set(A.VERDICT_LABELS["fundus"])


def test_compact_map_at_the_edge_is_a_border_cue_even_over_lids() -> None:
    # A corner blob one map cell wide keeps 0.38 of its energy in the 10% band (below the general
    # 0.42), its peak within a cell of the edge, on skin: the edge rule calls it a border cue.
    from components.lens.attention import OFF_BORDER, OFF_SKIN, _external_verdict

    figures = {"energy_in_border": 0.38, "peak_in_border": False, "peak_near_edge": True, "peak_in_lens": False,
               "energy_in_lens_zone": 0.2, "energy_on_skin": 0.6, "spread": 0.06}
    assert _external_verdict(figures, True, True, True) == OFF_BORDER
    # Spread over the lid (not compact), or peaking away from the edge: lids or skin, as before.
    assert _external_verdict({**figures, "spread": 0.2}, True, True, True) == OFF_SKIN
    assert _external_verdict({**figures, "peak_near_edge": False}, True, True, True) == OFF_SKIN
    # Below the edge share the band holds too little for a border call.
    assert _external_verdict({**figures, "energy_in_border": 0.30}, True, True, True) == OFF_SKIN


def test_the_finder_and_the_words_are_the_shared_ones() -> None:
    # One lens finder and one vocabulary: the names kept here are the very same objects.
    from components.lens import finder as lens
    from components.screening import vocabulary

    assert A.find_lens is lens.find_lens
    assert A.detect_modality is lens.detect_modality
    assert A.LensRegion is lens.LensRegion
    assert A.AttentionError is lens.AttentionError
    assert A.VERDICTS is vocabulary.VERDICTS
    assert A.VERDICT_LABELS is vocabulary.VERDICT_LABELS
    assert A.FIGURE_LABELS is vocabulary.FIGURE_LABELS
    assert A.describe is vocabulary.describe_figures
    assert not hasattr(A, "MODALITIES")  # the modalities are the vocabulary's (ATTENTION_MODALITIES)
