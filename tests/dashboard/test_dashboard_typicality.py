"""The Review page: the typicality line under the result, and the region the check used outlined on request."""

from __future__ import annotations

import numpy as np

from components.explanation.outline import draw_region
from components.explanation.overlay import blend
from components.imaging import sha256_bytes
from components.workflows import review as rs
from dashboard.keys import EyeScope
from tests.dashboard.support import expected, images, new_app, served, upload_quick
from tests.support import CSDI


def test_typicality_line_and_region_toggle(env, clf) -> None:
    path = CSDI / "LZ-OD.jpg"
    pixels, ex = expected(clf, path)
    at = upload_quick(new_app(), "LZ-OD.jpg", path.read_bytes())
    assert not at.error
    # The test checkpoint carries no statistics: the screen says so rather than showing a number.
    assert any("Typicality: not available" in c.value for c in at.caption)
    toggle = at.toggle(key=EyeScope(sha256_bytes(path.read_bytes())).key("show_region"))
    assert toggle.value is False  # off by default: the overlay is the plain blend
    display = rs.downscale(pixels)
    plain = blend(display, ex.cam, alpha=0.5, colormap="jet")
    assert np.abs(served(images(at)["Overlay"]).astype(int) - plain).mean() < 2.5
    toggle.set_value(True).run()
    region = rs.attention_for(display, ex, "fundus").region.as_dict()
    assert region["found"]
    outlined = served(images(at)["Overlay"]).astype(int)
    want = draw_region(plain, region)
    assert np.abs(outlined - want).mean() < 2.5
    ring = np.any(want != plain, axis=2)
    # Along the drawn circle the picture is the outline's green, not the plain overlay.
    assert np.abs(outlined[ring] - plain[ring]).mean() > 40
