"""Safe decoding of patient images (files, uploads, arrays, DICOM) into plain RGB uint8 pixels."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
from typing import IO, Union, cast

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.imaging.decoding import (
    CORRUPT,
    DECODER_ERRORS,
    DecodedImage,
    ImageError,
    channels_to_rgb,
    check_size,
    decoding_room,
    load_completely,
    open_with_pillow,
    oriented,
    rescale,
    to_uint8,
)
from components.imaging.dicom import decode_dicom

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "MAX_WHOLE_DECODE_PIXELS",
    "DecodedImage",
    "ImageError",
    "ImageSource",
    "decode_image",
    "encode_png",
    "laterality_from_filename",
    "load_rgb",
    "sha256_bytes",
]


MAX_PIXELS: int = 100_000_000
"""Default decompression-bomb limit: the most pixels (width x height) an image may declare."""

MAX_WHOLE_DECODE_PIXELS: int = 30_000_000
"""The most pixels a PNG, TIFF, WebP, BMP, GIF or progressive JPEG may declare, whatever ``max_pixels`` allows.

Pillow decodes these formats whole, at 4 bytes a pixel for RGB, before anything can shrink them:
30 megapixels cost 120 MB for a moment (a 24-megapixel camera exports at 6000 x 4000). A JPEG
may declare up to ``max_pixels`` because with ``min_side`` it is decoded at 1/2, 1/4 or 1/8
scale by the decoder itself; a progressive JPEG cannot be, since libjpeg keeps all its
coefficients. Measured figures are in ``docs/MEMORY.md``.
"""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm"}
)
"""Lower-case file suffixes treated as images when scanning folders."""

ImageSource = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray
]

# Pillow may only open these raster formats. Its other plugins (EPS runs Ghostscript, and
# many rarely used parsers) would widen what an untrusted upload can reach for no clinical use.
# Camera MPO files are opened by the JPEG plugin and report their format as "MPO".
_PIL_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})

_EXIF_ORIENTATION = 0x0112

_NOT_AN_IMAGE = (
    "The data is not a supported image; expected JPEG, PNG, BMP, TIFF, WebP, GIF or DICOM."
)
# Leading bytes of the formats Pillow may open: data that starts like one of them but cannot be
# opened is a damaged image (often a cut-off TIFF whose directory sits at the end), not a
# different kind of file.
_SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"GIF87a",
    b"GIF89a",
)


def decode_image(
    source: ImageSource, *, min_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> DecodedImage:
    """Decode an image source into RGB uint8 pixels, refusing anything unsafe or incomplete.

    ``source`` is a path, encoded bytes, a binary file-like object (read from its current
    position, which is restored afterwards when the stream can seek), a PIL image or a numpy
    array. ``min_side`` is the size the caller uses the image at: a JPEG is decoded at 1/2, 1/4
    or 1/8 scale (DCT scaling, nearly free) and any other encoded photograph is shrunk right
    after decoding by the largest whole factor (box average) that keeps both sides at least
    ``min_side``, so that the full-size pixels are never held. ``max_pixels`` bounds width x
    height, checked from the header before pixels are decoded; formats Pillow decodes whole are
    also bounded by :data:`MAX_WHOLE_DECODE_PIXELS`.

    Raises:
        TypeError: ``source`` is of an unsupported type, or a stream returns text.
        ValueError: ``min_side`` or ``max_pixels`` is not a positive integer.
        ImageError: the data is not a supported image, is damaged, or is too large.
    """
    _check_positive("min_side", min_side, allow_none=True)
    _check_positive("max_pixels", max_pixels, allow_none=False)
    if isinstance(source, np.ndarray):
        return _decode_array(source, max_pixels)
    if isinstance(source, Image.Image):
        return _decode_pil_image(source, max_pixels)
    data, suffix = _read_source(source)
    if not data:
        raise ImageError("The image is empty: it contains no bytes.")
    if data[128:132] == b"DICM":
        return decode_dicom(data, max_pixels, force=False, min_side=min_side)
    return _decode_encoded(data, min_side, max_pixels, dicom_fallback=suffix == ".dcm")


def load_rgb(
    source: ImageSource, *, min_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode an image source into (H, W, 3) uint8 RGB pixels; see :func:`decode_image`."""
    return decode_image(source, min_side=min_side, max_pixels=max_pixels).pixels


_LATERALITY_WORDS = {"od": "OD", "right": "OD", "os": "OS", "left": "OS"}
# Words of a file name: runs of capitals ("OD" in "DLY-OD"), capitalised or lower-case words
# ("Left" in "LeftEye") and digits, so "OD1" and "leftEye" split where a reader would split.
_NAME_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def laterality_from_filename(name: str | os.PathLike[str]) -> str | None:
    """Return "OD" or "OS" when a file name names exactly one eye (OD/OS/right/left), else None.

    Only whole words count, so "photos.jpg" is not read as OS; single letters R and L are
    ignored because they are too often something else.
    """
    base = re.split(r"[\\/]", os.fspath(name))[-1]
    found = {
        _LATERALITY_WORDS[token.lower()]
        for token in _NAME_TOKEN.findall(base)
        if token.lower() in _LATERALITY_WORDS
    }
    return found.pop() if len(found) == 1 else None


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode (H, W, 3) uint8 RGB pixels as metadata-free PNG bytes; equal pixels, equal bytes."""
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
        or 0 in pixels.shape
    ):
        shape = getattr(pixels, "shape", None)
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        raise ImageError(
            f"Expected non-empty (H, W, 3) uint8 RGB pixels to encode, got {shape} of {dtype}."
        )
    buffer = io.BytesIO()
    # A new image carries no info dict, so Pillow writes only IHDR, IDAT and IEND: no text,
    # EXIF, time or physical-size chunks, and zlib output depends only on the pixels.
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


# --- sources -------------------------------------------------------------------------------


def _check_positive(name: str, value: int | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{name} must be {expected}, got {value!r}.")


def _read_source(source: object) -> tuple[bytes, str]:
    """Encoded bytes of a path, bytes-like or file-like source, and its lower-case suffix."""
    if isinstance(source, bytes):
        return source, ""
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source), ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not isinstance(path, str):
            raise TypeError("An image path must be text; pass a file's contents as bytes instead.")
        return _read_path(path), os.path.splitext(path)[1].lower()
    if callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        suffix = os.path.splitext(name)[1].lower() if isinstance(name, str) else ""
        return _read_stream(cast(IO[bytes], source)), suffix
    raise TypeError(
        "An image source must be a path, bytes, a binary file object, a PIL image or a numpy "
        f"array, got {type(source).__name__}."
    )


def _read_path(path: str) -> bytes:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError("The path is a folder, not an image file.")
        # A FIFO or device would block or never end; only regular files are images.
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("The path is not a regular file, so it cannot be an image.")
        with open(path, "rb") as handle:
            return handle.read()
    except ImageError:
        raise
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError("The image file does not exist.") from None
    except PermissionError:
        raise ImageError("The image file cannot be read: permission denied.") from None
    except (OSError, ValueError):  # ValueError: a NUL character in the path
        raise ImageError("The image file cannot be read.") from None


def _read_stream(stream: IO[bytes]) -> bytes:
    position = None
    try:
        if stream.seekable():
            position = stream.tell()
    except (AttributeError, OSError, ValueError):
        position = None
    try:
        data = stream.read()
    except (OSError, ValueError):
        raise ImageError("The uploaded image stream cannot be read.") from None
    finally:
        # Leave the caller's stream where it was, so an upload can be decoded and still saved.
        if position is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.seek(position)
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("The image file object returned text; open it in binary mode ('rb').")
    return data


# --- photographs through Pillow, and arrays ---------------------------------------------------------


def _decode_encoded(
    data: bytes, min_side: int | None, max_pixels: int, *, dicom_fallback: bool
) -> DecodedImage:
    try:
        image, stream = open_with_pillow(data, _PIL_FORMATS, max_pixels)
    except UnidentifiedImageError:
        if dicom_fallback:
            # A .dcm file may lack the 128-byte preamble and "DICM" magic.
            return decode_dicom(data, max_pixels, force=True, min_side=min_side)
        damaged = data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        raise ImageError(CORRUPT if damaged else _NOT_AN_IMAGE) from None
    with image:
        width, height = image.size
        # A progressive JPEG keeps every DCT coefficient of the whole image (3 to 6 bytes a
        # pixel) whatever the scale it is decoded at: measured 295 MB at 100 megapixels.
        if image.format not in _JPEG_FORMATS or image.info.get("progressive"):
            check_size(width, height, min(max_pixels, MAX_WHOLE_DECODE_PIXELS))
        elif min_side is not None:
            # Pillow picks the largest 1/2, 1/4 or 1/8 scale keeping both sides >= the request;
            # a square request makes that independent of a later 90-degree EXIF rotation.
            image.draft("RGB", (min_side, min_side))
        # The full-size pixels exist from the decode until the reduced copy is made.
        with decoding_room(*image.size):
            load_completely(image, stream)
            orientation = _orientation(image)
            rgb = _reduced_rgb(image, min_side)
            source_format = image.format or "IMAGE"
            image.close()
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(oriented(rgb, orientation), None, source_format, original)


# Modes Pillow's box reduction works on directly; the others become RGB first.
_REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK", "YCbCr"})


def _reduced_rgb(image: Image.Image, min_side: int | None) -> np.ndarray:
    """RGB pixels of a loaded image, box-reduced by the largest factor keeping both sides >= min_side."""
    factor = 1 if min_side is None else min(image.size) // min_side
    if factor < 2:
        return _pil_to_rgb(image)
    if image.mode in _REDUCIBLE_MODES and "transparency" not in image.info:
        # Reduced before the RGB copy, so the full-size pixels exist once, inside Pillow, and
        # are released as soon as this returns.
        with image.reduce(factor) as small:
            return _pil_to_rgb(small)
    with Image.fromarray(_pil_to_rgb(image)) as rgb, rgb.reduce(factor) as small:
        return np.asarray(small)


def _decode_pil_image(image: Image.Image, max_pixels: int) -> DecodedImage:
    width, height = image.size
    check_size(width, height, max_pixels)
    try:
        # The caller owns this image: it is read, never drafted, closed or changed in place.
        image.load()
        orientation = _orientation(image)
        rgb = _pil_to_rgb(image)
    except ImageError:
        raise
    except DECODER_ERRORS:
        raise ImageError(CORRUPT) from None
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(oriented(rgb, orientation), None, image.format or "PIL", original)


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8 (Pillow also reads TIFF tags and XMP); unknown values mean upright."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except DECODER_ERRORS:
        # A mirrored eye photo swaps the apparent eye, so an unreadable orientation is refused
        # rather than guessed.
        raise ImageError("The image metadata is corrupt, so its orientation is unknown.") from None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a loaded PIL image of any supported mode."""
    mode = image.mode
    transparent = "transparency" in image.info and mode in ("1", "L", "P", "RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or transparent:
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        return channels_to_rgb(np.asarray(rgba))
    if mode in ("1", "L", "RGB"):
        return channels_to_rgb(to_uint8(np.asarray(image)))
    if mode.startswith("I;16"):
        return channels_to_rgb(rescale(np.asarray(image), 65535))
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(
                "The 32-bit greyscale image has values outside 0 to 65535; expected 16-bit data."
            )
        return channels_to_rgb(rescale(values, 65535))
    if mode == "F":
        return channels_to_rgb(to_uint8(np.asarray(image)))
    try:
        # P without transparency, CMYK, YCbCr and HSV have exact or standard RGB conversions.
        return np.asarray(image.convert("RGB"))
    except ValueError:
        raise ImageError(f"The image colour mode {mode} is not supported.") from None


def _decode_array(array: np.ndarray, max_pixels: int) -> DecodedImage:
    shape = array.shape
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))):
        raise ImageError(
            f"The pixel array has shape {shape}; "
            "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."
        )
    height, width = shape[0], shape[1]
    check_size(width, height, max_pixels)
    rgb = channels_to_rgb(to_uint8(array))
    if np.may_share_memory(rgb, array):
        # The result is made read-only, which must never happen to the caller's own array.
        rgb = rgb.copy()
    return DecodedImage(oriented(rgb, 1), None, "ARRAY", (width, height))
