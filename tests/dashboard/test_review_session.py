"""The review screen's engine helpers: a bounded cache, display copies, the heatmap panel, map keys."""

from __future__ import annotations

import numpy as np

from components import review_session as rs
from components.overlay import colorbar, colorize, resize_map


def test_review_session_helpers() -> None:
    cache: rs.BoundedCache[str, int] = rs.BoundedCache(2)
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
    for i in range(1, rs.RECENT_FULL_ENTRIES + 1):  # push them out of the few kept
        rs.image_from_pixels(str(i) * 64, small, lambda: small)
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


def test_a_map_is_cached_per_image_model_method_and_class(clf) -> None:
    from models import Classifier

    other = Classifier(model=clf.model, class_names=clf.class_names, weights_sha256="f" * 64)
    key = rs.map_key("a" * 64, clf, method="gradcam", target=None)
    assert key == ("a" * 64, clf.weights_sha256, "gradcam", rs.PREDICTED, "features.8")
    assert rs.map_key("a" * 64, other, method="gradcam", target=None) != key  # a model change
    assert rs.map_key("a" * 64, clf, method="hirescam", target=None) != key
    assert rs.map_key("a" * 64, clf, method="gradcam", target="Normal") != key
    assert rs.map_key("b" * 64, clf, method="gradcam", target=None) != key
