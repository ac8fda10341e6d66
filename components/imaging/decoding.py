"""The guarded steps every image decoder here shares: one-sentence refusals, the size limit, and pixels to RGB uint8.

:mod:`components.imaging.loading` (photographs, uploads, arrays) and :mod:`components.imaging.dicom` both open
encoded data through :func:`open_with_pillow` and :func:`load_completely`, check the declared
size with :func:`check_size` before any pixel is decoded, and turn whatever pixel type they get
(16-bit, float, grey, RGBA) into read-only (H, W, 3) uint8 RGB with the arithmetic below.
:func:`decoding_room`, taken by :mod:`components.imaging.loading` around each photograph's decode,
keeps what all threads decode at full size at once within :data:`DECODING_BUDGET_BYTES` (DICOM
pixel data, decoded by pydicom, is not counted).
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.base.errors import CataractCamError

__all__ = [
    "CORRUPT",
    "DECODER_ERRORS",
    "DECODING_BUDGET_BYTES",
    "TRUNCATED",
    "DecodedImage",
    "EndWatchingReader",
    "ImageError",
    "channels_to_rgb",
    "check_size",
    "decoding_room",
    "load_completely",
    "open_with_pillow",
    "oriented",
    "rescale",
    "to_uint8",
    "too_large_for_pillow",
]


class ImageError(CataractCamError, ValueError):
    """An image could not be decoded; the message is one sentence with no path or patient data."""


# Exceptions that Pillow's and pydicom's parsers raise on malformed input; anything of these
# kinds coming out of a decoder means "bad image", never a bug in the caller.
DECODER_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
    zlib.error,
    Image.DecompressionBombError,
)

TRUNCATED = "The image data is truncated: the file ends before the image is complete."
CORRUPT = "The image data is corrupt or incomplete and cannot be decoded."


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """Pixels of one decoded image with the little that is safe and useful to keep about it."""

    pixels: np.ndarray
    """(H, W, 3) uint8 RGB, C-contiguous and read-only (copy it before editing in place)."""
    laterality: str | None
    """"OD" or "OS" from a DICOM laterality attribute, else None."""
    source_format: str
    """Container format: "JPEG", "PNG", "DICOM", "TIFF", "ARRAY", "PIL", ..."""
    original_size: tuple[int, int]
    """(width, height) of the full image after EXIF orientation, before any JPEG draft scaling."""


class EndWatchingReader(io.BytesIO):
    """In-memory stream that notes when a decoder reads at or past the end of the data.

    Pillow only refuses a truncated file while ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False,
    a process-wide flag other code may set; when it is True Pillow pads the missing rows with
    grey. A complete image never needs a read after its last byte, so an empty read while
    pixels are decoded proves truncation whatever the flag says.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.watching = False
        self.reached_end = False
        self.read_past_end = False

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self.watching:
            if size is None or size < 0 or len(chunk) < size:
                self.reached_end = True
            if not chunk and size != 0:
                self.read_past_end = True
        return chunk


def open_with_pillow(
    data: bytes, formats: tuple[str, ...], max_pixels: int
) -> tuple[Image.Image, EndWatchingReader]:
    """Open lazily (header only) and check the size; UnidentifiedImageError is the caller's."""
    stream = EndWatchingReader(data)
    try:
        image = Image.open(stream, formats=formats)
    except UnidentifiedImageError:
        raise
    except Image.DecompressionBombError:
        raise too_large_for_pillow(max_pixels) from None
    except DECODER_ERRORS:
        raise ImageError(CORRUPT) from None
    try:
        check_size(*image.size, max_pixels)
    except ImageError:
        image.close()
        raise
    return image, stream


def load_completely(image: Image.Image, stream: EndWatchingReader) -> None:
    """Decode the pixels, refusing data that ends early or fails to decode."""
    stream.watching = True
    try:
        image.load()
    except DECODER_ERRORS:
        raise ImageError(TRUNCATED if stream.reached_end else CORRUPT) from None
    finally:
        stream.watching = False
    if stream.read_past_end:
        raise ImageError(TRUNCATED)


DECODING_BUDGET_BYTES = 128 * 2**20
"""The most bytes of pixels decoded at full size that this process holds at once, across threads.

Pillow holds 4 bytes a pixel while it decodes (RGB is stored as RGBX) and keeps the full-size
image until it has been shrunk: a 25-megapixel PNG is 100 MB for a moment. Two threads doing that
at once, while the model runs, made the peak of ``cataract-cam batch``; with this budget the
second waits (any decode that fits beside the others goes ahead; one larger than the whole budget
runs alone, so the largest allowed, 30 megapixels, still decodes).
"""


class _Budget:
    """Bytes handed out to threads, at most ``limit`` at once (or one holder of more)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.used -= nbytes
                self._changed.notify_all()


_decoding_budget = _Budget(DECODING_BUDGET_BYTES)


def decoding_room(width: int, height: int) -> contextlib.AbstractContextManager[None]:
    """Wait until a width x height image fits in :data:`DECODING_BUDGET_BYTES`, and hold it meanwhile.

    Wrap the decode and the shrinking, the whole time the full-size pixels exist.
    """
    return _decoding_budget.hold(4 * width * height)


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("The image has zero width or height.")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is too large: {width} x {height} pixels exceeds the limit of "
            f"{max_pixels} pixels."
        )


def too_large_for_pillow(max_pixels: int) -> ImageError:
    # Pillow refuses headers above twice its own limit before we see the size; report the
    # smaller of the two limits, which the image exceeds either way.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    limit = max_pixels if pillow_limit is None else min(max_pixels, 2 * int(pillow_limit))
    return ImageError(f"The image is too large: it exceeds the limit of {limit} pixels.")


def oriented(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation to (H, W, 3) pixels; returns a C-contiguous read-only array."""
    if orientation == 2:
        rgb = rgb[:, ::-1]
    elif orientation == 3:
        rgb = rgb[::-1, ::-1]
    elif orientation == 4:
        rgb = rgb[::-1]
    elif orientation == 5:
        rgb = rgb.transpose(1, 0, 2)
    elif orientation == 6:
        rgb = rgb[::-1].transpose(1, 0, 2)
    elif orientation == 7:
        rgb = rgb[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        rgb = rgb[:, ::-1].transpose(1, 0, 2)
    rgb = np.ascontiguousarray(rgb)
    rgb.setflags(write=False)
    return rgb


# --- pixel arithmetic shared by arrays, 16-bit images and DICOM ----------------------------


def rescale(values: np.ndarray, max_value: int) -> np.ndarray:
    """Map integers in [0, max_value] onto [0, 255] by rounding v * 255 / max_value."""
    wide_type = np.uint32 if max_value < 2**24 else np.uint64
    if values.dtype.kind == "i":
        values = np.clip(values, 0, max_value)
    # Widened in place, step by step: a 16-bit frame of a large photograph is tens of megabytes.
    wide: np.ndarray = values.astype(wide_type)
    np.minimum(wide, max_value, out=wide)
    wide *= 255
    wide += max_value // 2
    wide //= max_value
    return wide.astype(np.uint8)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """uint8 values of the same shape from uint8, uint16 (v / 257), bool or float in [0, 1]."""
    kind, itemsize = values.dtype.kind, values.dtype.itemsize
    if kind == "u" and itemsize == 1:
        return values
    if kind == "b":
        return values.astype(np.uint8) * np.uint8(255)
    if kind == "u" and itemsize == 2:
        return rescale(values, 65535)
    if kind == "f":
        if values.size and not (
            np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0
        ):
            raise ImageError(
                "The floating-point pixels are outside 0 to 1 or not finite; "
                "expected values in [0, 1]."
            )
        return np.rint(values * 255.0).astype(np.uint8)
    raise ImageError(
        f"The pixel array has data type {values.dtype}; expected uint8, uint16, bool or "
        "floating point in [0, 1]."
    )


def channels_to_rgb(values: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB from uint8 grey (H, W) / (H, W, 1), RGB, or RGBA composited over black.

    Transparent areas become black because black is what surrounds the eye in slit-lamp and
    fundus photographs: a white or grey fill would add a bright frame the classifier never saw
    in training and that attention maps would light up on.
    """
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 2:
        return np.repeat(values[:, :, np.newaxis], 3, axis=2)
    if values.shape[2] == 3:
        return values
    if values[:, :, 3].min() == 255:
        # Fully opaque RGBA is common (camera exports); skip the blending arithmetic.
        return values[:, :, :3]
    alpha = values[:, :, 3:4].astype(np.uint16)
    blended = values[:, :, :3].astype(np.uint16) * alpha
    blended += 127
    blended //= 255
    return blended.astype(np.uint8)
