"""DICOM decoding: the first frame of an ophthalmic DICOM file as RGB uint8, with its laterality and nothing else.

Uncompressed and JPEG Baseline pixel data are decoded here (the JPEG frame through the same
guarded Pillow path as photographs). The compressed syntaxes that fundus and external-eye
cameras send (JPEG 2000 and HTJ2K, JPEG-LS, JPEG Lossless, JPEG Extended, RLE) are decoded
by pydicom's pixel-data plugins: pylibjpeg with its openjpeg, libjpeg and rle decoders. Every
decode happens inside the process-wide decoding budget, after the declared size is checked;
patient and study attributes are never parsed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from PIL import Image, UnidentifiedImageError

from components.imaging.decoding import (
    DecodedImage,
    ImageError,
    channels_to_rgb,
    check_size,
    decoding_room,
    load_completely,
    open_with_pillow,
    oriented,
    rescale,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["decode_dicom"]


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
# Decoded by pydicom's plugins (pylibjpeg: openjpeg, libjpeg, rle), name of the package that does it.
_DICOM_PLUGIN_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K (Lossless Only)
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K (Lossless, RPCL)
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE Lossless
}
# JPEG 2000's own colour transforms: the codec undoes them, so the frame comes back as RGB.
_J2K_COLOUR = frozenset({"YBR_ICT", "YBR_RCT"})


class _Quiet(logging.Filter):
    """Drops what pydicom's pixel decoders log: a failed plugin logs its traceback, and a file's
    inconsistencies are reported here, once, as the sentence of an ImageError."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_Quiet())
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


def decode_dicom(data: bytes, max_pixels: int, *, force: bool, min_side: int | None = None) -> DecodedImage:
    """The first frame as RGB uint8, box-reduced by the largest factor keeping both sides >= ``min_side``.

    Like a photograph's, the full-size frame exists only inside the process-wide decoding budget
    (:func:`components.imaging.decoding.decoding_room`), from its decode to its reduced copy.
    """
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
    check_size(header.columns, header.rows, max_pixels)
    by_plugin = header.syntax in _DICOM_PLUGIN_SYNTAXES
    colour = _DICOM_COLOUR | (_J2K_COLOUR if _DICOM_PLUGIN_SYNTAXES.get(header.syntax) == "pylibjpeg-openjpeg"
                              else frozenset())
    if not (
        (header.samples == 1 and header.photometric in ("MONOCHROME1", "MONOCHROME2"))
        or (header.samples == 3 and header.photometric in colour)
    ):
        named = header.photometric if header.photometric in _DICOM_OTHER_PHOTOMETRIC else "this"
        raise ImageError(
            f"The DICOM colour encoding {named} is not supported; expected MONOCHROME1, "
            "MONOCHROME2, RGB or YBR_FULL."
        )
    if not 1 <= header.bits_stored <= 32:
        raise ImageError("The DICOM Bits Stored value is invalid; expected 1 to 32.")

    if header.syntax != _JPEG_BASELINE and header.syntax not in _DICOM_NATIVE and not by_plugin:
        _refuse_syntax(header)
    if by_plugin:
        _check_plugin(header)
    with decoding_room(header.columns, header.rows):
        if header.syntax == _JPEG_BASELINE:
            grey_or_rgb = _dicom_jpeg_frame(dataset, header, max_pixels)
        else:
            # pydicom decodes uncompressed frames itself and compressed ones through its plugins.
            grey_or_rgb = _dicom_native_frame(dataset, header)
        if header.photometric == "MONOCHROME1":
            # MONOCHROME1 stores dark as high values; invert so the picture reads like any other.
            grey_or_rgb = 255 - grey_or_rgb
        rgb = _reduced(channels_to_rgb(grey_or_rgb), min_side)
        del grey_or_rgb
    return DecodedImage(
        oriented(rgb, 1), header.laterality, "DICOM", (header.columns, header.rows)
    )


def _reduced(rgb: np.ndarray, min_side: int | None) -> np.ndarray:
    """Box-reduced by the largest whole factor keeping both sides >= min_side (as photographs are)."""
    factor = 1 if min_side is None else min(rgb.shape[:2]) // min_side
    if factor < 2:
        return rgb
    with Image.fromarray(rgb) as full, full.reduce(factor) as small:
        return np.asarray(small)


_EXPECTED_SYNTAXES = "expected uncompressed, JPEG, JPEG-LS, JPEG 2000 or RLE pixel data"


def _refuse_syntax(header: _DicomHeader) -> NoReturn:
    if header.syntax_name is not None:
        raise ImageError(
            f"The DICOM pixel data uses {header.syntax_name}, which cannot be decoded here; {_EXPECTED_SYNTAXES}."
        )
    raise ImageError(f"The DICOM file uses an unrecognised transfer syntax; {_EXPECTED_SYNTAXES}.")


def _check_plugin(header: _DicomHeader) -> None:
    """One sentence naming the package to install when the syntax's decoder is missing."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        available = get_decoder(header.syntax).is_available
    except Exception:  # pydicom raises NotImplementedError for syntaxes it has no decoder for
        available = False
    if not available:
        raise ImageError(
            f"The DICOM pixel data uses {header.syntax_name or 'a compressed transfer syntax'}, and its decoder "
            f"({_DICOM_PLUGIN_SYNTAXES[header.syntax]}) is not installed; install it to read this file."
        )


def _dicom_native_frame(dataset: Dataset, header: _DicomHeader) -> np.ndarray:
    """First frame of uncompressed (or plugin-decoded) pixel data as uint8, scaled by Bits Stored.

    YBR_FULL and YBR_FULL_422 frames come back from pydicom as RGB; JPEG 2000's YBR_ICT and
    YBR_RCT are undone by the codec itself.
    """
    from pydicom.pixels import pixel_array

    try:
        frame = pixel_array(dataset, index=0)  # first frame only, even for multi-frame files
    except Exception:  # pydicom and its plugins raise many kinds on inconsistent data
        raise ImageError(_DICOM_BAD_PIXELS) from None
    expected = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if frame.shape != expected or frame.dtype.kind not in "ui":
        raise ImageError("The DICOM pixel data does not match its declared size and type.")
    if header.signed:
        frame = frame.astype(np.int64) + 2 ** (header.bits_stored - 1)
    if frame.dtype == np.uint8 and header.bits_stored == 8:
        return frame
    return rescale(frame, 2**header.bits_stored - 1)


def _dicom_jpeg_frame(dataset: Dataset, header: _DicomHeader, max_pixels: int) -> np.ndarray:
    """First frame of JPEG Baseline pixel data, decoded by the same guarded path as photographs."""
    from pydicom.encaps import get_frame

    get = dataset.get
    try:
        offsets = get("ExtendedOffsetTable"), get("ExtendedOffsetTableLengths")
        frame_bytes = get_frame(
            dataset.PixelData,
            0,
            extended_offsets=offsets if offsets[0] is not None and offsets[1] is not None else None,
            number_of_frames=int(get("NumberOfFrames", 1) or 1),
        )
    except Exception:  # malformed encapsulation raises many kinds
        raise ImageError(_DICOM_BAD_PIXELS) from None
    try:
        image, stream = open_with_pillow(bytes(frame_bytes), ("JPEG",), max_pixels)
    except UnidentifiedImageError:
        raise ImageError(_DICOM_BAD_PIXELS) from None
    with image:
        keep_components = header.photometric == "RGB" and _libjpeg_assumes_ycbcr(image)
        if keep_components:
            # The frame holds R, G, B without a colour transform but has no marker saying so;
            # asking for YCbCr output stops libjpeg from "converting" it.
            image.draft("YCbCr", None)
        load_completely(image, stream)
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


def _dicom_header(dataset: Dataset) -> _DicomHeader:
    from pydicom.uid import UID, UID_dictionary

    get = dataset.get
    bits_allocated = int(get("BitsAllocated", 8) or 8)
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")
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


def _dicom_laterality(get: Callable[..., Any]) -> str | None:
    # Image Laterality describes this image, Laterality the series; the first one present wins.
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(get(keyword, "") or "").strip().upper()
        if value:
            return {"R": "OD", "L": "OS"}.get(value)
    return None
