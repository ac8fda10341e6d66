"""Tests for the synthetic eye generator: determinism, the dataset's layout, and masks that match the pixels."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from models.synthetic import (
    CATARACT_TYPES,
    MASK_NAMES,
    generate_dataset,
    preview_grid,
    render_eye,
)

SMALL = (128, 96)


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("syn_a")
    seen: list[tuple[int, int]] = []
    rows = generate_dataset(root, 8, 2026, size=SMALL, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 8) for i in range(1, 9)]
    return root, rows


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(dataset, tmp_path: Path) -> None:
    root, _ = dataset
    again = tmp_path / "again"
    generate_dataset(again, 8, 2026, size=SMALL)
    first, second = _files(root), _files(again)
    # 8 images, 4 masks each, and labels.csv; nothing else (no temporary files left behind).
    assert len(first) == 8 + 8 * 4 + 1
    assert first == second
    other = tmp_path / "other"
    generate_dataset(other, 8, 2027, size=SMALL)
    third = _files(other)
    a = {k: v for k, v in first.items() if k.endswith(".jpg")}
    b = {k.replace("2027", "2026"): v for k, v in third.items() if k.endswith(".jpg")}
    assert set(a) != set(b) or all(a[k] != b[k] for k in a)


def test_labels_csv_columns_counts_and_patients(dataset) -> None:
    root, rows = dataset
    text = (root / "labels.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "file,label,type,grade,seed,eye,group"
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 8
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert Counter(r["label"] for r in table) == {"cataract": 4, "normal": 4}
    # Four cataracts, one of each type.
    assert sorted(r["type"] for r in table if r["label"] == "cataract") == sorted(CATARACT_TYPES)
    for i, r in enumerate(table):
        assert r["file"] == f"{r['label']}/syn_2026_{i:05d}.jpg"
        assert (root / r["file"]).is_file()
        if r["label"] == "normal":
            assert (r["type"], r["grade"]) == ("", "0")
        else:
            assert 1 <= int(r["grade"]) <= 4
        if r["type"] == "mature":
            assert int(r["grade"]) >= 3
        for name in MASK_NAMES:
            assert (root / "masks" / f"syn_2026_{i:05d}_{name}.png").is_file()
    # Consecutive pairs are one patient: same group, right eye then left eye; groups differ.
    for k in range(0, 8, 2):
        assert table[k]["group"] == table[k + 1]["group"]
        assert (table[k]["eye"], table[k + 1]["eye"]) == ("OD", "OS")
    assert len({r["group"] for r in table}) == 4


def test_cataract_count_is_exact_and_grades_are_balanced(tmp_path: Path) -> None:
    # 48 images at 0.5: 24 cataracts, 6 of each type. Each non-mature type takes grades
    # 1,1,2,2,3,4 and mature 3,3,3,4,4,4, so every grade appears exactly 6 times.
    rows = generate_dataset(tmp_path / "d", 48, 5, size=(64, 64))
    cat = [r for r in rows if r["label"] == "cataract"]
    assert len(cat) == 24
    assert Counter(r["type"] for r in cat) == dict.fromkeys(CATARACT_TYPES, 6)
    assert Counter(r["grade"] for r in cat) == {1: 6, 2: 6, 3: 6, 4: 6}
    assert Counter(r["grade"] for r in cat if r["type"] == "mature") == {3: 3, 4: 3}
    # round(10 * 0.3) = 3 cataracts.
    rows = generate_dataset(tmp_path / "e", 10, 5, size=(64, 64), cataract_fraction=0.3)
    assert sum(r["label"] == "cataract" for r in rows) == 3


def test_a_dataset_image_is_made_again_from_its_row(dataset) -> None:
    root, rows = dataset
    for i in (2, 3):  # both eyes of the second patient
        r = rows[i]
        od_seed = rows[i - i % 2]["seed"]
        eye = render_eye(r["seed"], label=r["label"], cataract_type=r["type"] or None, grade=r["grade"],
                         eye=r["eye"], size=SMALL, patient_seed=od_seed)
        # The stored file is the rendered pixels as a baseline 4:2:0 JPEG at the image's own quality.
        buf = io.BytesIO()
        Image.fromarray(eye.image).save(buf, "JPEG", quality=eye.meta["jpeg_quality"], subsampling="4:2:0")
        assert (root / r["file"]).read_bytes() == buf.getvalue()
        assert 70 <= eye.meta["jpeg_quality"] <= 95
        for name in MASK_NAMES:
            png = np.asarray(Image.open(root / "masks" / f"syn_2026_{i:05d}_{name}.png"))
            assert png.dtype == np.uint8
            assert set(np.unique(png)) <= {0, 255}
            assert np.array_equal(png == 255, eye.masks[name])


def test_image_is_uint8_rgb_of_the_requested_size() -> None:
    for size in ((512, 384), (224, 224), (200, 300)):
        eye = render_eye(11, size=size)
        assert eye.image.dtype == np.uint8
        assert eye.image.shape == (size[1], size[0], 3)
        for name in MASK_NAMES:
            assert eye.masks[name].dtype == bool
            assert eye.masks[name].shape == (size[1], size[0])


def test_masks_partition_the_image_and_match_the_geometry() -> None:
    checked = 0
    for seed in range(6):
        eye = render_eye(seed, label="normal")
        stack = np.stack([eye.masks[n] for n in MASK_NAMES])
        # Pairwise disjoint and covering every pixel: each pixel has exactly one structure.
        assert np.array_equal(stack.sum(0), np.ones(stack.shape[1:], int))
        m = eye.meta
        ys, xs = np.nonzero(eye.masks["pupil"])
        assert xs.size > 0.5 * np.pi * m["pupil_radius"] ** 2 * m["pupil_visible_fraction"]
        ix, iy = m["iris_center"]
        assert np.hypot(xs - ix, ys - iy).max() <= m["iris_radius"]
        px, py = m["pupil_center"]
        assert np.hypot(xs - px, ys - py).max() <= m["pupil_radius"]
        if m["pupil_visible_fraction"] == 1.0:
            assert abs(xs.mean() - px) < 2
            assert abs(ys.mean() - py) < 2
            assert xs.size == pytest.approx(np.pi * m["pupil_radius"] ** 2, rel=0.05)
            checked += 1
    assert checked >= 4


def test_pupil_is_dark_in_a_normal_eye_and_bright_in_a_mature_cataract() -> None:
    ratios = []
    for seed in range(8):
        normal = render_eye(seed, label="normal", size=(256, 192))
        mature = render_eye(seed, cataract_type="mature", grade=4, size=(256, 192))
        luma_n, luma_m = _luma(normal.image), _luma(mature.image)
        iris, pupil = normal.masks["iris"], normal.masks["pupil"]
        # Medians, so that a corneal reflection over the pupil does not decide the answer.
        ratios.append(np.median(luma_n[pupil]) / np.median(luma_n[iris]))
        assert np.median(luma_n[pupil]) < 40
        assert np.median(luma_m[pupil]) > np.median(luma_m[iris]) + 40
        assert luma_m[pupil].mean() > luma_m[iris].mean()
    # Dark brown irides are nearly as dark as a pupil; the others are far lighter.
    assert max(ratios) < 0.75
    assert np.mean(ratios) < 0.4


def test_cataract_and_normal_of_one_seed_differ_only_inside_the_pupil() -> None:
    for seed, kind, grade in ((3, "nuclear", 1), (4, "cortical", 2), (5, "posterior_subcapsular", 1),
                              (6, "mature", 3)):
        normal = render_eye(seed, label="normal", eye="OS")
        cat = render_eye(seed, cataract_type=kind, grade=grade, eye="OS")
        assert cat.meta["pupil_center"] == normal.meta["pupil_center"]
        for name in MASK_NAMES:
            assert np.array_equal(cat.masks[name], normal.masks[name])
        diff = np.abs(cat.image.astype(int) - normal.image.astype(int)).max(-1)
        h, w = diff.shape
        px, py = normal.meta["pupil_center"]
        yy, xx = np.mgrid[0:h, 0:w]
        # Defocus and sharpening spread the pupil by at most about 12 px at this size.
        near = np.hypot(xx - px, yy - py) <= normal.meta["pupil_radius"] + 14
        assert diff[~near].max() == 0
        assert np.percentile(diff[normal.masks["pupil"]], 95) > 25, kind


def test_every_type_and_grade_renders_a_visible_opacity() -> None:
    # At about the model's resolution: even grade 1 brightens part of the pupil by tens of levels.
    for seed in (21, 22):
        normal = render_eye(seed, label="normal", size=(224, 168))
        pupil = normal.masks["pupil"]
        base = _luma(normal.image)[pupil]
        for kind in CATARACT_TYPES:
            means = []
            for grade in ((3, 4) if kind == "mature" else (1, 2, 3, 4)):
                eye = render_eye(seed, cataract_type=kind, grade=grade, size=(224, 168))
                assert (eye.meta["label"], eye.meta["type"], eye.meta["grade"]) == ("cataract", kind, grade)
                gain = _luma(eye.image)[pupil] - base
                assert np.percentile(gain, 95) > 25, (seed, kind, grade)
                assert gain.mean() > 5, (seed, kind, grade)
                means.append(gain.mean())
            assert means[-1] > means[0] + 10, (seed, kind, means)


def test_unspecified_conditions_are_drawn_from_the_seed() -> None:
    a, b = render_eye(99, size=SMALL), render_eye(99, size=SMALL)
    assert np.array_equal(a.image, b.image)
    assert a.meta == b.meta
    metas = [render_eye(s, size=(64, 64)).meta for s in range(40)]
    assert {m["label"] for m in metas} == {"cataract", "normal"}
    assert {m["eye"] for m in metas} == {"OD", "OS"}
    for m in metas:
        assert (m["label"] == "normal") == (m["grade"] == 0) == (m["type"] is None)
    assert render_eye(1, grade=0, size=(64, 64)).meta["label"] == "normal"
    assert render_eye(1, cataract_type="mature", size=(64, 64)).meta["grade"] in (3, 4)


def test_nasal_canthus_follows_the_eye() -> None:
    # OD faces the camera with its nasal (medial) canthus on the image's right; OS is the other way.
    # Where the medial canthus is in the picture, the caruncle fills the medial end of the fissure, so the
    # sclera stops short of the medial canthus but runs into the lateral one, and the caruncle is pink.
    checked = 0
    for seed in range(300):  # close-up framing: a canthus is in the picture in a minority of eyes
        if checked >= 4:
            break
        for eye, sign in (("OD", 1), ("OS", -1)):
            e = render_eye(seed, eye=eye, label="normal")
            (mx, my), (lx, ly) = e.meta["medial_canthus"], e.meta["lateral_canthus"]
            assert (mx - lx) * sign > 0
            h, w = e.image.shape[:2]
            # Close-up framing rarely shows both canthi; check the medial one wherever it is in view.
            r = e.meta["iris_radius"]
            if not (0.3 * r <= mx < w - 0.3 * r and 0.3 * r <= my < h - 0.3 * r):
                continue
            ys, xs = np.nonzero(e.masks["sclera"])
            assert np.hypot(xs - mx, ys - my).min() > 0.2 * r
            if 0 <= lx < w and 0 <= ly < h:
                assert np.hypot(xs - lx, ys - ly).min() < 0.1 * r
            d = np.hypot(lx - mx, ly - my)
            x, y = int(mx + (lx - mx) / d * 0.2 * r), int(my + (ly - my) / d * 0.2 * r)
            rgb = e.image.astype(float)
            red_minus_green = rgb[..., 0] - rgb[..., 1]
            caruncle = red_minus_green[y - 1:y + 2, x - 1:x + 2].mean()
            assert caruncle > np.median(red_minus_green[e.masks["sclera"]]) + 15, (seed, eye)
            checked += 1
    assert checked >= 4


def test_bad_arguments_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label"):
        render_eye(1, label="glaucoma")
    with pytest.raises(ValueError, match="cataract_type"):
        render_eye(1, cataract_type="congenital")
    with pytest.raises(ValueError, match="mature"):
        render_eye(1, cataract_type="mature", grade=2)
    with pytest.raises(ValueError, match="normal"):
        render_eye(1, label="normal", grade=2)
    with pytest.raises(ValueError, match="grade"):
        render_eye(1, grade=5)
    with pytest.raises(ValueError, match="eye"):
        render_eye(1, eye="OU")
    with pytest.raises(ValueError, match="size"):
        render_eye(1, size=(10, 10))
    with pytest.raises(ValueError, match="seed"):
        render_eye(-1)
    with pytest.raises(ValueError, match="cataract_fraction"):
        generate_dataset(tmp_path, 2, 1, cataract_fraction=1.5)
    with pytest.raises(ValueError, match="n must"):
        generate_dataset(tmp_path, -1, 1)


def test_preview_grid_writes_a_labelled_png(tmp_path: Path) -> None:
    out = tmp_path / "preview.png"
    grid = preview_grid([1, 2, 3], out, columns=2, tile_width=96, size=(128, 96))
    # Two rows of two 96x72 tiles; the empty fourth cell stays white.
    assert grid.shape == (144, 192, 3)
    assert np.array_equal(np.asarray(Image.open(out)), grid)
    assert (grid[72:, 96:] == 255).all()
    # The third tile is seed 3 as a grade 1 nuclear cataract (the plan's third entry), through JPEG;
    # the label is written over its bottom rows.
    def tile(seed: int) -> np.ndarray:
        image = render_eye(seed, cataract_type="nuclear", grade=1, size=(128, 96)).image
        return cv2.resize(image, (96, 72), interpolation=cv2.INTER_AREA)[:56].astype(int)

    shown = grid[72:128, 0:96].astype(int)
    assert np.abs(shown - tile(3)).mean() < 8
    assert np.abs(shown - tile(2)).mean() > 2 * np.abs(shown - tile(3)).mean()
