"""One eye's evidence as flowables: the three panels (original, heatmap, overlay) and the region outline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from PIL import Image
from reportlab.lib.utils import ImageReader
from reportlab.platypus import Flowable

from components.explanation.cam import METHOD_LABELS, Explanation
from components.explanation.outline import draw_region
from components.explanation.overlay import blend, colorbar, colorize, resize_map
from components.report.fonts import BOLD, REGULAR
from components.report.style import INK, MUTED, RULE, SHADE

# Print resolution of the panels, and a cap so that huge photographs cannot bloat the file.
PANEL_DPI: Final = 200
PANEL_MAX_SIDE: Final = 640


def fit(width: float, height: float, box_w: float, box_h: float) -> tuple[float, float]:
    """The largest size of that aspect ratio inside the box."""
    scale = min(box_w / width, box_h / height)
    return width * scale, height * scale


def print_pixels(draw_w: float, draw_h: float, src_w: int, src_h: int) -> tuple[int, int]:
    """Pixels for a picture printed at draw_w x draw_h points: PANEL_DPI, capped, never upscaled."""
    scale = PANEL_DPI / 72.0
    w, h = draw_w * scale, draw_h * scale
    cap = PANEL_MAX_SIDE / max(w, h)
    if cap < 1.0:
        w, h = w * cap, h * cap
    if w > src_w or h > src_h:
        return src_w, src_h
    return max(1, round(w)), max(1, round(h))


class Panels(Flowable):
    """Original | heatmap with its colour bar | overlay, side by side across the frame."""

    _TITLE_H = 13.0
    _GAP = 9.0
    _BAR_GAP, _BAR_W, _TICKS_W = 3.0, 6.5, 15.0

    def __init__(
        self, image: np.ndarray | None, explanation: Explanation | None, colormap: str, alpha: float
    ) -> None:
        super().__init__()
        self._image = image
        self._expl = explanation
        self._colormap = colormap
        self._alpha = float(alpha)
        self._layout_width: float | None = None
        self._pictures: list[Image.Image | None] = []

    def _layout(self, avail: float) -> None:
        if self._layout_width == avail:
            return
        extra = self._BAR_GAP + self._BAR_W + self._TICKS_W
        self.panel_w = (avail - 2 * self._GAP - extra) / 3
        src_h, src_w = self._image.shape[:2] if self._image is not None else (3, 4)
        # Without a photograph the placeholders only need to say so, not fill a panel's height.
        aspect = min(max(src_h / src_w, 0.5), 1.0) if self._image is not None else 0.3
        self.box_h = self.panel_w * aspect
        self.draw_w, self.draw_h = fit(src_w, src_h, self.panel_w, self.box_h)
        self.xs = [0.0, self.panel_w + self._GAP, 2 * (self.panel_w + self._GAP) + extra]
        self.width, self.height = avail, self._TITLE_H + self.box_h
        self._pictures = self._render()
        self._layout_width = avail

    def _render(self) -> list[Image.Image | None]:
        if self._image is None:
            return [None, None, None]
        src_h, src_w = self._image.shape[:2]
        pw, ph = print_pixels(self.draw_w, self.draw_h, src_w, src_h)
        original = Image.fromarray(self._image)
        if (pw, ph) != (src_w, src_h):
            original = original.resize((pw, ph), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if self._expl is None:
            return [original, None, None]
        small = np.asarray(original)
        heat = colorize(resize_map(self._expl.cam, (pw, ph)), self._colormap)
        over = blend(small, self._expl.cam, alpha=self._alpha, colormap=self._colormap)
        return [original, Image.fromarray(heat), Image.fromarray(over)]

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:  # reportlab's names
        self._layout(availWidth)
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        method = METHOD_LABELS.get(self._expl.method, self._expl.method) if self._expl else "Grad-CAM"
        titles = ("Original", f"{method} Heatmap", "Overlay")
        img_y = (self.box_h - self.draw_h) / 2
        for x, title, picture in zip(self.xs, titles, self._pictures, strict=True):
            c.setFont(BOLD, 8.6)
            c.setFillColor(INK)
            c.drawCentredString(x + self.panel_w / 2, self.box_h + 4, title)
            img_x = x + (self.panel_w - self.draw_w) / 2
            if picture is None:
                self._draw_placeholder(img_x, img_y)
                continue
            c.drawImage(ImageReader(picture), img_x, img_y, self.draw_w, self.draw_h)
            c.setStrokeColor(RULE)
            c.setLineWidth(0.4)
            c.rect(img_x, img_y, self.draw_w, self.draw_h, stroke=1, fill=0)
        if self._pictures[1] is not None:
            self._draw_colour_bar(self.xs[1] + (self.panel_w + self.draw_w) / 2 + self._BAR_GAP, img_y)

    def _draw_placeholder(self, x: float, y: float) -> None:
        c = self.canv
        c.setFillColor(SHADE)
        c.setStrokeColor(RULE)
        c.rect(x, y, self.draw_w, self.draw_h, stroke=1, fill=1)
        c.setFillColor(MUTED)
        c.setFont(REGULAR, 7.5)
        message = "Image could not be read" if self._image is None else "No model analysis"
        c.drawCentredString(x + self.draw_w / 2, y + self.draw_h / 2 - 3, message)

    def _draw_colour_bar(self, x: float, y: float) -> None:
        c = self.canv
        bar = Image.fromarray(colorbar(256, 4, self._colormap))
        c.drawImage(ImageReader(bar), x, y, self._BAR_W, self.draw_h)
        c.setStrokeColor(MUTED)
        c.setLineWidth(0.4)
        c.rect(x, y, self._BAR_W, self.draw_h, stroke=1, fill=0)
        c.setFillColor(MUTED)
        c.setFont(REGULAR, 6.2)
        for frac, text in ((1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")):
            ty = y + frac * self.draw_h
            c.line(x + self._BAR_W, ty, x + self._BAR_W + 2, ty)
            c.drawString(x + self._BAR_W + 3, min(max(ty - 2.2, y), y + self.draw_h - 5), text)


class RegionOutline(Flowable):
    """The photograph with the pupil and iris the attention check used drawn on it, one panel wide.

    ``region`` is :meth:`components.lens.finder.LensRegion.as_dict`; its ``size`` is the picture it was
    found on (the dashboard's display copy, or the photograph itself), so it is scaled to the
    printed copy. Without ``size`` it is taken to be measured on ``image`` itself.
    """

    def __init__(self, image: np.ndarray, region: Mapping[str, Any]) -> None:
        super().__init__()
        self._image = image
        self._region = region
        self._layout_width: float | None = None
        self.picture: Image.Image | None = None

    def wrap(self, availWidth: float, availHeight: float) -> tuple[float, float]:  # reportlab's names
        if self._layout_width != availWidth:
            src_h, src_w = self._image.shape[:2]
            panel_w = (availWidth - 2 * Panels._GAP - Panels._BAR_GAP - Panels._BAR_W - Panels._TICKS_W) / 3
            self.draw_w, self.draw_h = fit(src_w, src_h, panel_w, panel_w * min(max(src_h / src_w, 0.5), 1.0))
            pw, ph = print_pixels(self.draw_w, self.draw_h, src_w, src_h)
            small = Image.fromarray(self._image)
            if (pw, ph) != (src_w, src_h):
                small = small.resize((pw, ph), Image.Resampling.LANCZOS, reducing_gap=3.0)
            size = self._region.get("size") or [src_w, src_h]
            self.picture = Image.fromarray(draw_region(np.asarray(small), self._region, scale=pw / float(size[0])))
            self._layout_width = availWidth
        self.width, self.height = self.draw_w, self.draw_h
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        c.drawImage(ImageReader(self.picture), 0, 0, self.draw_w, self.draw_h)
        c.setStrokeColor(RULE)
        c.setLineWidth(0.4)
        c.rect(0, 0, self.draw_w, self.draw_h, stroke=1, fill=0)
