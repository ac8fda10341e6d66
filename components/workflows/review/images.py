"""Photographs as the review holds them: a display copy always, the full pixels on demand, and the pictures drawn."""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

from components.base.cache import BoundedCache
from components.explanation.overlay import colorbar, colorize, font, resize_map
from components.explanation.overlay import fit_within as fit_to_side
from components.imaging.loading import ImageError, decode_image, laterality_from_filename, sha256_bytes

__all__ = ["DISPLAY_MAX_SIDE", "RECENT_FULL_BYTES", "REVIEW_MIN_SIDE", "HeldUpload", "ReviewImage", "downscale",
           "heatmap_panel", "image_from_pixels", "image_from_upload", "jpeg_bytes", "reattached"]

DISPLAY_MAX_SIDE = 1024

# Full-resolution photographs are large (18 MB at 6 megapixels) and needed only to explain, to
# check attention and to print: the last few are kept, the others are decoded again on demand.
RECENT_FULL_BYTES = 160 * 2**20

_RECENT_FULL: BoundedCache[str, np.ndarray] = BoundedCache(RECENT_FULL_BYTES)

REVIEW_MIN_SIDE = 1024
"""The review decodes a photograph down to this short side at least (see ``decode_image``'s
``min_side``): the model's largest input, the display copy (1024) and the report's pictures
(640) need no more, so nothing the review shows or prints loses detail, while a 100-megapixel
JPEG is held at about 5 MB. A photograph saved to a record is stored at this size too."""


class HeldUpload:
    """An upload's bytes, held by the session that received it; shared caches keep only a weak reference."""

    __slots__ = ("__weakref__", "data")

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"An upload must be bytes, got {type(data).__name__}.")
        self.data = data


class _Reopen:
    """Decodes a held upload again, without keeping it alive (the session owns the bytes)."""

    def __init__(self, held: HeldUpload) -> None:
        self._held = weakref.ref(held)

    def __call__(self) -> np.ndarray:
        held = self._held()
        if held is None:
            raise ImageError("The photograph is no longer at hand; drop it again.")
        return decode_image(held.data, min_side=REVIEW_MIN_SIDE).pixels


@dataclass(frozen=True, eq=False)


class ReviewImage:
    """One photograph as the review screen holds it: a small copy for the screen, the full one on demand."""

    sha256: str  # of the upload's bytes, or the stored PNG's name
    display: np.ndarray  # at most DISPLAY_MAX_SIDE pixels on the long side, read-only
    display_jpeg: bytes  # the display copy encoded once, so a redraw does not encode it again
    laterality: str | None  # "OD"/"OS" from DICOM or the file name, else None
    original_size: tuple[int, int]  # (width, height)
    source: Callable[[], np.ndarray] = field(repr=False)  # decodes the full-resolution pixels

    def full(self) -> np.ndarray:
        """The full-resolution RGB pixels (read-only), for the model, the attention check and the report."""
        pixels = _RECENT_FULL.get(self.sha256)
        if pixels is None:
            pixels = _read_only(self.source())
            _RECENT_FULL.put(self.sha256, pixels)
        return pixels


def downscale(pixels: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """The image shrunk (area averaging) so that its long side is at most ``max_side``; never enlarged."""
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}.")
    # The same shrink the three-panel figure uses, so the screen and the CLI's pictures agree.
    return fit_to_side(pixels, max_side)


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    """RGB pixels as a JPEG for the screen: no metadata, full colour resolution (no chroma subsampling)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def _read_only(array: np.ndarray) -> np.ndarray:
    # A read-only view: shared between sessions, so nobody may paint on it.
    view = np.ascontiguousarray(array).view()
    view.setflags(write=False)
    return view


def image_from_pixels(sha256: str, pixels: np.ndarray, source: Callable[[], np.ndarray],
                      laterality: str | None = None) -> ReviewImage:
    """A ReviewImage from decoded RGB pixels; ``source`` gives the same pixels again when they are needed later."""
    full = _read_only(pixels)
    _RECENT_FULL.put(sha256, full)
    display = full if max(full.shape[:2]) <= DISPLAY_MAX_SIDE else _read_only(downscale(full))
    return ReviewImage(sha256=sha256, display=display, display_jpeg=jpeg_bytes(display),
                       laterality=laterality, original_size=(int(full.shape[1]), int(full.shape[0])),
                       source=source)


def image_from_upload(upload: HeldUpload, filename: str = "") -> ReviewImage:
    """Decode an upload safely at the review's size; laterality from DICOM, else the file name.

    The image keeps only a weak reference to the upload's bytes: see :func:`reattached`.

    Raises:
        TypeError: ``upload`` is not a :class:`HeldUpload`.
        ImageError: the upload is not a usable image.
    """
    if not isinstance(upload, HeldUpload):
        raise TypeError(f"Expected a HeldUpload, got {type(upload).__name__}.")
    decoded = decode_image(upload.data, min_side=REVIEW_MIN_SIDE)
    laterality = decoded.laterality or (laterality_from_filename(filename) if filename else None)
    return image_from_pixels(sha256_bytes(upload.data), decoded.pixels, _Reopen(upload), laterality)


def reattached(image: ReviewImage, upload: HeldUpload) -> ReviewImage:
    """The same image decoding its full pixels again from this session's ``upload`` when they are needed.

    A cached image may come from another session whose bytes are gone.

    Raises:
        TypeError: ``upload`` is not a :class:`HeldUpload`.
    """
    if not isinstance(upload, HeldUpload):
        raise TypeError(f"Expected a HeldUpload, got {type(upload).__name__}.")
    return replace(image, source=_Reopen(upload))


def heatmap_panel(cam: np.ndarray, size: tuple[int, int], colormap: str = "jet") -> np.ndarray:
    """The heatmap at ``size`` (width, height) with its colour bar and 0 / 0.5 / 1 ticks on the right, RGB uint8."""
    width, height = size
    heat = colorize(resize_map(cam, (width, height)), colormap)
    # Sized to the picture, so the ticks stay legible when the screen shows it at a third of its width.
    unit = max(10, round(max(width, height) / 24))
    gap, bar_w, label_w = unit // 3, round(unit * 0.8), round(unit * 2.2)
    canvas = Image.new("RGB", (width + gap + bar_w + label_w, height), (255, 255, 255))
    canvas.paste(Image.fromarray(heat), (0, 0))
    bar_x = width + gap
    canvas.paste(Image.fromarray(colorbar(height, bar_w, colormap)), (bar_x, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((bar_x, 0, bar_x + bar_w - 1, height - 1), outline=(90, 90, 90))
    text_font = font(max(9, round(unit * 0.75)))
    for frac, label in ((0.0, "1.0"), (0.5, "0.5"), (1.0, "0.0")):
        y = min(max(frac * (height - 1), unit * 0.5), height - 1 - unit * 0.5)
        draw.line((bar_x + bar_w, frac * (height - 1), bar_x + bar_w + 3, frac * (height - 1)),
                  fill=(90, 90, 90))
        draw.text((bar_x + bar_w + 5, y), label, fill=(50, 50, 50), font=text_font, anchor="lm")
    return np.asarray(canvas)
