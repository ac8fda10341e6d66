"""Safe decoding of patient images (files, uploads, arrays, DICOM) into plain RGB uint8 pixels."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from typing import IO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "DecodedImage",
    "ImageError",
    "ImageSource",
    "decode_image",
    "encode_png",
    "laterality_from_filename",
    "load_rgb",
    "sha256_bytes",
]


class ImageError(ValueError):
    """An image could not be decoded; the message is one sentence with no path or patient data."""


MAX_PIXELS: int = 100_000_000
"""Default decompression-bomb limit: the most pixels (width x height) an image may declare."""

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

# Exceptions that Pillow's and pydicom's parsers raise on malformed input; anything of these
# kinds coming out of a decoder means "bad image", never a bug in the caller.
_DECODER_ERRORS = (
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

_EXIF_ORIENTATION = 0x0112

_NOT_AN_IMAGE = (
    "The data is not a supported image; expected JPEG, PNG, BMP, TIFF, WebP, GIF or DICOM."
)
_TRUNCATED = "The image data is truncated: the file ends before the image is complete."
_CORRUPT = "The image data is corrupt or incomplete and cannot be decoded."
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


def decode_image(
    source: ImageSource, *, min_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> DecodedImage:
    """Decode an image source into RGB uint8 pixels, refusing anything unsafe or incomplete.

    ``source`` is a path, encoded bytes, a binary file-like object (read from its current
    position, which is restored afterwards when the stream can seek), a PIL image or a numpy
    array. With ``min_side`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale (DCT scaling, nearly
    free) as long as both sides stay at least ``min_side``; other formats are never resized.
    ``max_pixels`` bounds width x height, checked from the header before pixels are decoded.
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
        return _decode_dicom(data, max_pixels, force=False)
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
        return _read_stream(source), suffix
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
            try:
                stream.seek(position)
            except (OSError, ValueError):
                pass
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, bytes):
        raise TypeError("The image file object returned text; open it in binary mode ('rb').")
    return data


# --- encoded images through Pillow ---------------------------------------------------------


class _EndWatchingReader(io.BytesIO):
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


def _decode_encoded(
    data: bytes, min_side: int | None, max_pixels: int, *, dicom_fallback: bool
) -> DecodedImage:
    try:
        image, stream = _open_with_pillow(data, _PIL_FORMATS, max_pixels)
    except UnidentifiedImageError:
        if dicom_fallback:
            # A .dcm file may lack the 128-byte preamble and "DICM" magic.
            return _decode_dicom(data, max_pixels, force=True)
        damaged = data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
        raise ImageError(_CORRUPT if damaged else _NOT_AN_IMAGE) from None
    with image:
        width, height = image.size
        if min_side is not None and image.format in _JPEG_FORMATS:
            # Pillow picks the largest 1/2, 1/4 or 1/8 scale keeping both sides >= the request;
            # a square request makes that independent of a later 90-degree EXIF rotation.
            image.draft("RGB", (min_side, min_side))
        _load_completely(image, stream)
        orientation = _orientation(image)
        rgb = _pil_to_rgb(image)
        source_format = image.format or "IMAGE"
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(_oriented(rgb, orientation), None, source_format, original)


def _open_with_pillow(
    data: bytes, formats: tuple[str, ...], max_pixels: int
) -> tuple[Image.Image, _EndWatchingReader]:
    """Open lazily (header only) and check the size; UnidentifiedImageError is the caller's."""
    stream = _EndWatchingReader(data)
    try:
        image = Image.open(stream, formats=formats)
    except UnidentifiedImageError:
        raise
    except Image.DecompressionBombError:
        raise _too_large_for_pillow(max_pixels) from None
    except _DECODER_ERRORS:
        raise ImageError(_CORRUPT) from None
    try:
        _check_size(*image.size, max_pixels)
    except ImageError:
        image.close()
        raise
    return image, stream


def _load_completely(image: Image.Image, stream: _EndWatchingReader) -> None:
    """Decode the pixels, refusing data that ends early or fails to decode."""
    stream.watching = True
    try:
        image.load()
    except _DECODER_ERRORS:
        raise ImageError(_TRUNCATED if stream.reached_end else _CORRUPT) from None
    finally:
        stream.watching = False
    if stream.read_past_end:
        raise ImageError(_TRUNCATED)


def _decode_pil_image(image: Image.Image, max_pixels: int) -> DecodedImage:
    width, height = image.size
    _check_size(width, height, max_pixels)
    try:
        # The caller owns this image: it is read, never drafted, closed or changed in place.
        image.load()
        orientation = _orientation(image)
        rgb = _pil_to_rgb(image)
    except ImageError:
        raise
    except _DECODER_ERRORS:
        raise ImageError(_CORRUPT) from None
    original = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(_oriented(rgb, orientation), None, image.format or "PIL", original)


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8 (Pillow also reads TIFF tags and XMP); unknown values mean upright."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODER_ERRORS:
        # A mirrored eye photo swaps the apparent eye, so an unreadable orientation is refused
        # rather than guessed.
        raise ImageError("The image metadata is corrupt, so its orientation is unknown.") from None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented(rgb: np.ndarray, orientation: int) -> np.ndarray:
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


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a loaded PIL image of any supported mode."""
    mode = image.mode
    transparent = "transparency" in image.info and mode in ("1", "L", "P", "RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or transparent:
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        return _channels_to_rgb(np.asarray(rgba))
    if mode in ("1", "L", "RGB"):
        return _channels_to_rgb(_to_uint8(np.asarray(image)))
    if mode.startswith("I;16"):
        return _channels_to_rgb(_rescale(np.asarray(image), 65535))
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(
                "The 32-bit greyscale image has values outside 0 to 65535; expected 16-bit data."
            )
        return _channels_to_rgb(_rescale(values, 65535))
    if mode == "F":
        return _channels_to_rgb(_to_uint8(np.asarray(image)))
    try:
        # P without transparency, CMYK, YCbCr and HSV have exact or standard RGB conversions.
        return np.asarray(image.convert("RGB"))
    except ValueError:
        raise ImageError(f"The image colour mode {mode} is not supported.") from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError("The image has zero width or height.")
    if width * height > max_pixels:
        raise ImageError(
            f"The image is too large: {width} x {height} pixels exceeds the limit of "
            f"{max_pixels} pixels."
        )


def _too_large_for_pillow(max_pixels: int) -> ImageError:
    # Pillow refuses headers above twice its own limit before we see the size; report the
    # smaller of the two limits, which the image exceeds either way.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    limit = max_pixels if pillow_limit is None else min(max_pixels, 2 * int(pillow_limit))
    return ImageError(f"The image is too large: it exceeds the limit of {limit} pixels.")


# --- pixel arithmetic shared by arrays, 16-bit images and DICOM ----------------------------


def _rescale(values: np.ndarray, max_value: int) -> np.ndarray:
    """Map integers in [0, max_value] onto [0, 255] by rounding v * 255 / max_value."""
    wide_type = np.uint32 if max_value < 2**24 else np.uint64
    if values.dtype.kind == "i":
        values = np.clip(values, 0, max_value)
    wide = values.astype(wide_type)
    np.minimum(wide, max_value, out=wide)
    wide *= 255
    wide += max_value // 2
    wide //= max_value
    return wide.astype(np.uint8)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """uint8 values of the same shape from uint8, uint16 (v / 257), bool or float in [0, 1]."""
    kind, itemsize = values.dtype.kind, values.dtype.itemsize
    if kind == "u" and itemsize == 1:
        return values
    if kind == "b":
        return values.astype(np.uint8) * np.uint8(255)
    if kind == "u" and itemsize == 2:
        return _rescale(values, 65535)
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


def _channels_to_rgb(values: np.ndarray) -> np.ndarray:
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


def _decode_array(array: np.ndarray, max_pixels: int) -> DecodedImage:
    shape = array.shape
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))):
        raise ImageError(
            f"The pixel array has shape {shape}; "
            "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."
        )
    height, width = shape[0], shape[1]
    _check_size(width, height, max_pixels)
    rgb = _channels_to_rgb(_to_uint8(array))
    if np.may_share_memory(rgb, array):
        # The result is made read-only, which must never happen to the caller's own array.
        rgb = rgb.copy()
    return DecodedImage(_oriented(rgb, 1), None, "ARRAY", (width, height))


# --- DICOM ---------------------------------------------------------------------------------

# Only these elements are parsed: patient and study attributes are never decoded into values,
# so nothing identifying can reach a warning, a message or memory we keep.
_DICOM_TAGS = [
    0x00200060,  # Laterality
    0x00200062,  # Image Laterality
    0x00280002,  # Samples per Pixel
    0x00280004,  # Photometric Interpretation
    0x00280006,  # Planar Configuration
    0x00280008,  # Number of Frames
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280100,  # Bits Allocated
    0x00280101,  # Bits Stored
    0x00280102,  # High Bit
    0x00280103,  # Pixel Representation
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,  # Extended Offset Table Lengths
    0x7FE00010,  # Pixel Data
]
_DICOM_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})
# Standard terms that may be named in a message; anything else in the element is not echoed.
_DICOM_OTHER_PHOTOMETRIC = frozenset(
    {
        "PALETTE COLOR",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
        "HSV",
        "ARGB",
        "CMYK",
        "XYB",
    }
)
_DICOM_UNREADABLE = "The DICOM file is corrupt or incomplete and cannot be read."
_DICOM_BAD_PIXELS = "The DICOM pixel data is corrupt or incomplete and cannot be decoded."
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_DICOM_NATIVE = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still found in archives)
    }
)


@dataclass(frozen=True)
class _DicomHeader:
    rows: int
    columns: int
    samples: int
    photometric: str
    bits_stored: int
    signed: bool
    laterality: str | None
    syntax: str
    syntax_name: str | None


def _decode_dicom(data: bytes, max_pixels: int, *, force: bool) -> DecodedImage:
    # Imported here so that decoding ordinary photographs never pays for loading pydicom.
    from pydicom import dcmread

    try:
        dataset = dcmread(io.BytesIO(data), force=force, specific_tags=_DICOM_TAGS)
        has_pixels = "PixelData" in dataset
        header = _dicom_header(dataset) if has_pixels else None
    except Exception:  # pydicom raises many kinds on malformed files
        raise ImageError(_DICOM_UNREADABLE) from None
    if header is None:
        raise ImageError("The DICOM file has no pixel data: it is incomplete or not an image.")
    _check_size(header.columns, header.rows, max_pixels)
    if not (
        (header.samples == 1 and header.photometric in ("MONOCHROME1", "MONOCHROME2"))
        or (header.samples == 3 and header.photometric in _DICOM_COLOUR)
    ):
        named = header.photometric if header.photometric in _DICOM_OTHER_PHOTOMETRIC else "this"
        raise ImageError(
            f"The DICOM colour encoding {named} is not supported; expected MONOCHROME1, "
            "MONOCHROME2, RGB or YBR_FULL."
        )
    if not 1 <= header.bits_stored <= 32:
        raise ImageError("The DICOM Bits Stored value is invalid; expected 1 to 32.")

    if header.syntax == _JPEG_BASELINE:
        grey_or_rgb = _dicom_jpeg_frame(dataset, header, max_pixels)
    elif header.syntax in _DICOM_NATIVE:
        grey_or_rgb = _dicom_native_frame(dataset, header)
    elif header.syntax_name is not None:
        # pydicom's compressed-data plugins log every failure with a traceback; only the syntaxes
        # decoded here without them are accepted, so nothing is ever logged.
        raise ImageError(
            f"The DICOM pixel data uses {header.syntax_name}, which cannot be decoded here; "
            "expected uncompressed or JPEG Baseline pixel data."
        )
    else:
        raise ImageError(
            "The DICOM file uses an unrecognised transfer syntax; expected uncompressed or "
            "JPEG Baseline pixel data."
        )
    if header.photometric == "MONOCHROME1":
        # MONOCHROME1 stores dark as high values; invert so the picture reads like any other.
        grey_or_rgb = 255 - grey_or_rgb
    rgb = _channels_to_rgb(grey_or_rgb)
    return DecodedImage(
        _oriented(rgb, 1), header.laterality, "DICOM", (header.columns, header.rows)
    )


def _dicom_native_frame(dataset: object, header: _DicomHeader) -> np.ndarray:
    """First frame of uncompressed pixel data as uint8, scaled by Bits Stored."""
    from pydicom.pixels import pixel_array

    try:
        frame = pixel_array(dataset, index=0)  # first frame only, even for multi-frame files
    except Exception:  # pydicom raises many kinds on inconsistent data
        raise ImageError(_DICOM_BAD_PIXELS) from None
    expected = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if frame.shape != expected or frame.dtype.kind not in "ui":
        raise ImageError("The DICOM pixel data does not match its declared size and type.")
    if header.signed:
        frame = frame.astype(np.int64) + 2 ** (header.bits_stored - 1)
    if frame.dtype == np.uint8 and header.bits_stored == 8:
        return frame
    return _rescale(frame, 2**header.bits_stored - 1)


def _dicom_jpeg_frame(dataset: object, header: _DicomHeader, max_pixels: int) -> np.ndarray:
    """First frame of JPEG Baseline pixel data, decoded by the same guarded path as photographs."""
    from pydicom.encaps import get_frame

    get = dataset.get  # type: ignore[attr-defined]
    try:
        offsets = get("ExtendedOffsetTable"), get("ExtendedOffsetTableLengths")
        frame_bytes = get_frame(
            dataset.PixelData,  # type: ignore[attr-defined]
            0,
            extended_offsets=offsets if offsets[0] is not None and offsets[1] is not None else None,
            number_of_frames=int(get("NumberOfFrames", 1) or 1),
        )
    except Exception:  # malformed encapsulation raises many kinds
        raise ImageError(_DICOM_BAD_PIXELS) from None
    try:
        image, stream = _open_with_pillow(bytes(frame_bytes), ("JPEG",), max_pixels)
    except UnidentifiedImageError:
        raise ImageError(_DICOM_BAD_PIXELS) from None
    with image:
        keep_components = header.photometric == "RGB" and _libjpeg_assumes_ycbcr(image)
        if keep_components:
            # The frame holds R, G, B without a colour transform but has no marker saying so;
            # asking for YCbCr output stops libjpeg from "converting" it.
            image.draft("YCbCr", None)
        _load_completely(image, stream)
        if image.size != (header.columns, header.rows):
            raise ImageError(
                "The DICOM JPEG frame size differs from the declared rows and columns."
            )
        if header.samples == 1 and image.mode == "L":
            return np.asarray(image)
        if header.samples == 3 and image.mode in ("RGB", "YCbCr"):
            keep = keep_components or image.mode == "RGB"
            return np.asarray(image) if keep else np.asarray(image.convert("RGB"))
    raise ImageError("The DICOM JPEG frame does not match the declared samples per pixel.")


def _libjpeg_assumes_ycbcr(image: Image.Image) -> bool:
    """Whether libjpeg will colour-convert this 3-component JPEG (its rules for unmarked files)."""
    if "jfif" in image.info:
        return True
    if "adobe" in image.info:
        return image.info.get("adobe_transform") != 0
    component_ids = [layer[0] for layer in getattr(image, "layer", [])]
    return component_ids != [ord("R"), ord("G"), ord("B")]


def _dicom_header(dataset: object) -> _DicomHeader:
    from pydicom.uid import UID, UID_dictionary

    get = dataset.get  # type: ignore[attr-defined]
    bits_allocated = int(get("BitsAllocated", 8) or 8)
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")  # type: ignore[attr-defined]
    uid = UID(syntax)
    known = uid in UID_dictionary and uid.is_transfer_syntax
    return _DicomHeader(
        rows=int(get("Rows", 0) or 0),
        columns=int(get("Columns", 0) or 0),
        samples=int(get("SamplesPerPixel", 1) or 1),
        photometric=str(get("PhotometricInterpretation", "") or "").strip().upper(),
        bits_stored=int(get("BitsStored", bits_allocated) or bits_allocated),
        signed=int(get("PixelRepresentation", 0) or 0) == 1,
        laterality=_dicom_laterality(get),
        syntax=syntax,
        # Only names from pydicom's own dictionary are ever shown, never text from the file.
        syntax_name=uid.name if known else None,
    )


def _dicom_laterality(get: object) -> str | None:
    # Image Laterality describes this image, Laterality the series; the first one present wins.
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(get(keyword, "") or "").strip().upper()  # type: ignore[operator]
        if value:
            return {"R": "OD", "L": "OS"}.get(value)
    return None
