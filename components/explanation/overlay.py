"""Pictures from maps: RGB colormaps, the heatmap blended over the photograph, and the three-panel figure."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["COLORMAPS", "OPENCV_COLORMAPS", "blend", "colorbar", "colorize", "fit_within", "font", "resize_map",
           "three_panel"]

# Names the UI offers; each is a 256-entry RGB lookup table taken from matplotlib's definition.
COLORMAPS: tuple[str, ...] = ("jet", "turbo", "inferno", "magma", "plasma", "viridis", "cividis", "hot", "bone")
PANEL_TITLES = ("Original", "Grad-CAM Heatmap", "Overlay")


# OpenCV's COLORMAP_* constants for the maps offered above: a caller of the prototype's API may
# pass either, and gets the same colours. The others OpenCV knows use OpenCV's own tables.
OPENCV_COLORMAPS: dict[int, str] = {
    cv2.COLORMAP_JET: "jet", cv2.COLORMAP_TURBO: "turbo", cv2.COLORMAP_INFERNO: "inferno",
    cv2.COLORMAP_MAGMA: "magma", cv2.COLORMAP_PLASMA: "plasma", cv2.COLORMAP_VIRIDIS: "viridis",
    cv2.COLORMAP_CIVIDIS: "cividis", cv2.COLORMAP_HOT: "hot", cv2.COLORMAP_BONE: "bone",
}
_OPENCV_OTHERS: dict[int, str] = {
    getattr(cv2, name): name.removeprefix("COLORMAP_").lower()
    for name in dir(cv2) if name.startswith("COLORMAP_") and getattr(cv2, name) not in OPENCV_COLORMAPS
}


@functools.cache
def _lut(name: str | int) -> np.ndarray:
    """The 256-entry RGB table of a colormap name in COLORMAPS or of an OpenCV COLORMAP_* constant."""
    if isinstance(name, int) and not isinstance(name, bool):
        if name in OPENCV_COLORMAPS:
            return _lut(OPENCV_COLORMAPS[name])
        if name not in _OPENCV_OTHERS:
            raise ValueError(f"Unknown OpenCV colormap {name}; expected one of cv2's COLORMAP_* constants.")
        bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], name)[:, 0]
        lut = np.ascontiguousarray(bgr[:, ::-1])  # OpenCV's BGR stays here
    elif name in COLORMAPS:
        from matplotlib import colormaps  # imported on first use: it costs a few hundred ms

        rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
        lut = np.rint(rgba[:, :3] * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"Unknown colormap {name!r}; expected one of {', '.join(COLORMAPS)}.")
    lut.setflags(write=False)
    return lut


def _check_cam(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam)
    if cam.ndim != 2 or not np.issubdtype(cam.dtype, np.floating):
        raise ValueError(f"Expected a 2-D float map, got {cam.dtype} array of shape {cam.shape}.")
    if not np.isfinite(cam).all():
        raise ValueError("The map contains NaN or infinite values.")
    return np.clip(cam, 0.0, 1.0).astype(np.float32, copy=False)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {got}.")
    return image


def resize_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a [0, 1] map to (width, height), pixel centres aligned as in the model."""
    return _resized(_check_cam(cam), size)


def _resized(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if cam.shape == (height, width):
        return cam
    return cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)


@functools.cache
def _lut_column(colormap: str | int) -> np.ndarray:
    """The colormap's table as OpenCV's applyColorMap takes a user table: (256, 1, 3), here in RGB order."""
    return np.ascontiguousarray(_lut(colormap).reshape(256, 1, 3))


def _heat(cam: np.ndarray, colormap: str | int) -> np.ndarray:
    # round(cam * 255) as uint8 (saturating, so a bilinear overshoot of 1 stays 255), then the table:
    # the same values as indexing the table with numpy, in a fraction of the time.
    return cv2.applyColorMap(cv2.convertScaleAbs(cam, alpha=255.0), _lut_column(colormap))


def colorize(cam: np.ndarray, colormap: str | int = "jet") -> np.ndarray:
    """A [0, 1] map to an RGB uint8 heatmap of the same size (0 -> the colormap's first colour)."""
    _lut(colormap)  # an unknown colormap is refused before any work
    return _heat(_check_cam(cam), colormap)


def _mix(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    a = float(np.float32(alpha))
    return cv2.addWeighted(image, 1.0 - a, heat, a, 0.0)


def blend(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, colormap: str | int = "jet") -> np.ndarray:
    """The heatmap over the photograph at the photograph's own size.

    ``alpha`` is exactly the heatmap's weight: 0 gives the photograph, 1 the pure heatmap, and
    every pixel is ``round((1 - alpha) * image + alpha * heatmap)`` with no gamma or rescaling.
    ``colormap`` is a name in :data:`COLORMAPS` or an OpenCV ``cv2.COLORMAP_*`` constant.

    Raises:
        ValueError: not an RGB uint8 image, not a finite 2-D map, alpha outside [0, 1], an
            unknown colormap.
    """
    image = _check_image(image)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    _lut(colormap)
    heat = _heat(_resized(_check_cam(cam), (image.shape[1], image.shape[0])), colormap)
    return _mix(image, heat, alpha)


@functools.cache
def _font_path() -> str | None:
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return str(path) if path.is_file() else None
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels."""
    path = _font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


def colorbar(height: int, width: int, colormap: str = "jet") -> np.ndarray:
    """A vertical colour bar, high values at the top, RGB uint8 (height, width, 3)."""
    ramp = np.linspace(1.0, 0.0, max(height, 2), dtype=np.float32)[:, None]
    return np.ascontiguousarray(np.repeat(colorize(ramp, colormap), width, axis=1))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image shrunk (area averaging) so its long side is at most ``max_side``; never enlarged."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def three_panel(image: np.ndarray, cam: np.ndarray, *, alpha: float = 0.5, colormap: str = "jet",
                caption: str = "", titles: Sequence[str] = PANEL_TITLES, max_side: int = 1024) -> np.ndarray:
    """Original | Grad-CAM Heatmap (with colour bar) | Overlay, titled and captioned, as one RGB image.

    Each panel is at most ``max_side`` pixels on its long side; the map is resized to the
    (downscaled) photograph, so the panels line up pixel for pixel.
    """
    image = fit_within(_check_image(image), max_side)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    h, w = image.shape[:2]
    _lut(colormap)
    heat = _heat(_resized(_check_cam(cam), (w, h)), colormap)
    over = _mix(image, heat, alpha)  # the same pixels blend() gives
    unit = max(12, round(max(h, w) / 40))
    title_font, small = font(unit + 4), font(unit)
    pad = unit
    bar_w = max(10, unit)
    label_w = round(unit * 2.6)
    title_h = unit + 4 + pad
    caption_h = (unit + pad) if caption else 0
    total_w = pad + w + pad + w + pad // 2 + bar_w + label_w + pad + w + pad
    total_h = pad + title_h + h + caption_h + pad
    canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    top = pad + title_h
    xs = [pad, pad + w + pad, pad + w + pad + w + pad // 2 + bar_w + label_w + pad]
    for x, panel, title in zip(xs, (image, heat, over), titles, strict=True):
        canvas.paste(Image.fromarray(panel), (x, top))
        draw.text((x + w / 2, pad + title_h / 2 - pad / 2), title, fill=(20, 20, 20), font=title_font, anchor="mm")
    bar_x = xs[1] + w + pad // 2
    canvas.paste(Image.fromarray(colorbar(h, bar_w, colormap)), (bar_x, top))
    draw.rectangle((bar_x, top, bar_x + bar_w - 1, top + h - 1), outline=(80, 80, 80))
    for frac, label in ((0.0, "1.0"), (0.5, "0.5"), (1.0, "0.0")):
        y = top + frac * (h - 1)
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 4, y), fill=(80, 80, 80))
        draw.text((bar_x + bar_w + 6, y), label, fill=(40, 40, 40), font=small, anchor="lm")
    if caption:
        draw.text((pad, top + h + pad // 2), caption, fill=(40, 40, 40), font=small, anchor="la")
    return np.asarray(canvas)
