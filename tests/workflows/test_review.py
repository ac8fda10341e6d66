"""The review screen's engine helpers: a bounded cache, display copies, the heatmap panel, map keys."""

from __future__ import annotations

import numpy as np
import pytest

from components.explanation.overlay import colorbar, colorize, resize_map
from components.workflows import review as rs


def test_review_helpers() -> None:
    cache: rs.BoundedCache[str, int] = rs.BoundedCache(2, sizeof=lambda v: 1)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent, so "b" goes first
    cache.put("c", 3)
    assert "b" not in cache
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert len(cache) == 2

    photo = np.zeros((1822, 2734, 3), np.uint8)
    assert rs.downscale(photo).shape == (682, 1024, 3)
    small = np.zeros((300, 200, 3), np.uint8)
    assert rs.downscale(small) is small  # never enlarged
    decodes = []
    image = rs.image_from_pixels("0" * 64, photo, lambda: decodes.append(1) or photo)
    assert image.display.shape == (682, 1024, 3)
    assert not image.full().flags.writeable
    assert decodes == []  # the pixels it was made from are still at hand
    # Push them out of the few kept: 160 MiB of recent photographs hold 10 of 16 MB each.
    filler = np.zeros((4096, 4096), np.uint8)
    assert rs.RECENT_FULL_BYTES // filler.nbytes == 10
    for i in range(1, 11):
        rs.image_from_pixels(str(i) * 64, np.dstack([filler] * 3)[:, :1365], lambda: small)
    assert image.full() is not photo
    assert np.array_equal(image.full(), photo)
    assert decodes == [1]

    # The colour bar beside the heatmap runs from the colormap's value at 1 (top) to 0 (bottom);
    # its first and last rows are the outline.
    cam = np.tile(np.linspace(0, 1, 224, dtype=np.float32), (224, 1))
    panel = rs.heatmap_panel(cam, (400, 300), "jet")
    assert panel.shape[0] == 300
    assert panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :400], colorize(resize_map(cam, (400, 300)), "jet"))
    unit = max(10, round(400 / 24))
    middle = 400 + unit // 3 + round(unit * 0.8) // 2
    np.testing.assert_array_equal(panel[1:-1, middle], colorbar(300, 1, "jet")[1:-1, 0])
    top, bottom = colorize(np.array([[1.0, 0.0]], np.float32), "jet")[0]
    np.testing.assert_array_equal(colorbar(300, 1, "jet")[[0, -1], 0], [top, bottom])
    assert rs.anonymous_id("ab12" * 16) == "ANON-AB12AB12"


def test_a_map_is_cached_per_image_model_method_and_class(trained_checkpoint) -> None:
    from models import Classifier, load_classifier

    clf = load_classifier(trained_checkpoint)

    other = Classifier(model=clf.model, class_names=clf.class_names, weights_sha256="f" * 64)
    key = rs.map_key("a" * 64, clf, method="gradcam", target=None)
    assert key == ("a" * 64, clf.weights_sha256, "gradcam", rs.PREDICTED, "features.8")
    assert rs.map_key("a" * 64, other, method="gradcam", target=None) != key  # a model change
    assert rs.map_key("a" * 64, clf, method="hirescam", target=None) != key
    assert rs.map_key("a" * 64, clf, method="gradcam", target="Normal") != key
    assert rs.map_key("b" * 64, clf, method="gradcam", target=None) != key


def test_caches_are_bounded_by_the_bytes_they_hold() -> None:
    one_mb = np.zeros(2**20, np.uint8)
    cache: rs.BoundedCache[int, np.ndarray] = rs.BoundedCache(3 * 2**20 + 10)
    for key in range(5):
        cache.put(key, one_mb.copy())
    assert len(cache) == 3
    assert cache.held == 3 * 2**20
    assert list(range(2, 5)) == [k for k in range(5) if k in cache]
    # One value larger than the whole budget is not kept, and pushes nothing out.
    cache.put(9, np.zeros(4 * 2**20, np.uint8))
    assert 9 not in cache
    assert len(cache) == 3
    # Replacing a key counts its new size only.
    cache.put(4, np.zeros(10, np.uint8))
    assert cache.held == 2 * 2**20 + 10
    # A dataclass counts its arrays and bytes: a display copy and its JPEG.
    photo = np.zeros((300, 400, 3), np.uint8)
    image = rs.image_from_pixels("e" * 64, photo, lambda: photo)
    assert rs.held_bytes(image) >= 360_000 + len(image.display_jpeg)
    assert rs.held_bytes(image) < 360_000 + len(image.display_jpeg) + 4_000
    for bad, error in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_bytes must be"):
            rs.BoundedCache(bad)  # type: ignore[arg-type]


def test_an_upload_is_not_kept_alive_by_its_cached_image() -> None:
    import gc
    import io

    from PIL import Image

    from components.imaging.loading import ImageError

    buffer = io.BytesIO()
    Image.fromarray(np.full((50, 60, 3), 7, np.uint8)).save(buffer, format="PNG")
    held = rs.HeldUpload(buffer.getvalue())
    image = rs.image_from_upload(held, "left eye.png")
    assert image.laterality == "OS"
    assert image.original_size == (60, 50)
    assert np.array_equal(image.source(), np.full((50, 60, 3), 7, np.uint8))
    del held
    gc.collect()
    with pytest.raises(ImageError, match=r"^The photograph is no longer at hand; drop it again\.$"):
        image.source()
    again = rs.HeldUpload(buffer.getvalue())
    assert np.array_equal(rs.reattached(image, again).source(), np.full((50, 60, 3), 7, np.uint8))


def test_typicality_reuses_the_maps_forward_pass() -> None:
    from models import load_classifier
    from models.synthetic import render_eye

    demo = load_classifier(None)  # it carries typicality statistics
    pixels = render_eye(910_200).image
    image = rs.image_from_pixels("d" * 64, pixels, lambda: pixels)
    runs: list[int] = []
    handle = demo.model.features[0].register_forward_pre_hook(lambda _m, _x: runs.append(1))
    try:
        explanation, ran = rs.explain_cached(rs.BoundedCache(2**24), demo, image)
        assert ran
        assert len(runs) == 1
        reused = rs.typicality_for(rs.BoundedCache(2**20), demo, image, explanation)
        assert len(runs) == 1  # scored from the map's forward pass: the model did not run again
        own = rs.typicality_for(rs.BoundedCache(2**20), demo, image)
        assert len(runs) == 2
    finally:
        handle.remove()
    assert reused.available
    assert reused.ood_score == pytest.approx(own.ood_score, rel=1e-9)
    assert reused.unlike_training == own.unlike_training
