"""Tests for components.imaging.loading: safe decoding, orientation, draft scaling, DICOM and PNG export."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps
from pydicom import dcmwrite
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    generate_uid,
)

from components.imaging import loading as imaging
from components.imaging.loading import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    MAX_WHOLE_DECODE_PIXELS,
    DecodedImage,
    ImageError,
    decode_image,
    encode_png,
    laterality_from_filename,
    load_rgb,
    sha256_bytes,
)
from tests.support import CSDI

# A 2734 x 1822 fundus JPEG from the CSDI dataset, CC BY 4.0 (attribution in the folder's README).
SAMPLE = CSDI / "DLY-OD.jpg"
PATIENT_NAME = "Doe^Jane"
RED, BLUE = (255, 0, 0), (0, 0, 255)


# --- fixture builders ------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _with_orientation(image: Image.Image, fmt: str, orientation: int, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(image, fmt, exif=exif, **options)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _png(width: int, height: int, bit_depth: int, colour_type: int, scanlines: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines))
        + _png_chunk(b"IEND", b"")
    )


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny 1-bit PNG whose header claims width x height; its pixel data is a few bytes."""
    return _png(width, height, 1, 0, b"\x00" * 64)


def _png_rgb16(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = values.shape
    rows = b"".join(b"\x00" + values[row].astype(">u2").tobytes() for row in range(height))
    return _png(width, height, 16, 2, rows)


def _png_chunk_types(data: bytes) -> list[bytes]:
    kinds, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kinds.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


def _two_colour(width: int = 64, height: int = 48) -> np.ndarray:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return pixels


def _dicom(
    pixel_data: bytes,
    rows: int,
    columns: int,
    *,
    samples: int = 1,
    photometric: str = "MONOCHROME2",
    bits: int = 8,
    stored: int | None = None,
    signed: bool = False,
    syntax: str = ExplicitVRLittleEndian,
    planar: int = 0,
    frames: int | None = None,
    preamble: bool = True,
    **attributes: object,
) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.1"  # ophthalmic photography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128 if preamble else None)
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = PATIENT_NAME
    dataset.PatientID = "MRN-4711"
    dataset.PatientBirthDate = "19500101"
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel = samples
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = bits
    dataset.BitsStored = stored or bits
    dataset.HighBit = (stored or bits) - 1
    dataset.PixelRepresentation = int(signed)
    if samples == 3:
        dataset.PlanarConfiguration = planar
    if frames is not None:
        dataset.NumberOfFrames = frames
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = pixel_data
    if meta.TransferSyntaxUID.is_compressed:
        dataset["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=preamble)
    return buffer.getvalue()


def _jpeg_dicom(pixels: np.ndarray, **attributes: object) -> bytes:
    frame = _encode(Image.fromarray(pixels), "JPEG", quality=95, subsampling=1)  # 4:2:2
    height, width, _ = pixels.shape
    return _dicom(
        encapsulate([frame]),
        height,
        width,
        samples=3,
        photometric="YBR_FULL_422",
        syntax=JPEGBaseline8Bit,
        **attributes,
    )


def _rgb_jpeg(pixels: np.ndarray, *, marked: bool) -> bytes:
    """A JPEG of untransformed R, G, B components, optionally with no marker saying so.

    Unmarked, libjpeg would take the components for YCbCr: the Adobe segment is dropped and the
    component ids 'R', 'G', 'B' (which libjpeg also recognises) become 1, 2, 3.
    """
    data = bytearray(_encode(Image.fromarray(pixels), "JPEG", keep_rgb=True, quality=95))
    if marked:
        return bytes(data)
    offset, out = 2, bytearray(data[:2])
    while True:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segment = bytearray(data[offset : offset + 2 + length])
        if marker == 0xC0:  # SOF0: ids at 10, 13, 16
            for position in (10, 13, 16):
                segment[position] = {82: 1, 71: 2, 66: 3}[segment[position]]
        if marker == 0xDA:  # SOS: ids at 5, 7, 9
            for position in (5, 7, 9):
                segment[position] = {82: 1, 71: 2, 66: 3}[segment[position]]
            return bytes(out + segment + data[offset + 2 + length :])
        if marker != 0xEE:  # drop APP14 "Adobe"
            out += segment
        offset += 2 + length


def _refused(source: object, **options: object) -> str:
    """Decode expecting ImageError; check the message is one clean sentence and return it."""
    with pytest.raises(ImageError) as caught:
        decode_image(source, **options)
    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert message.endswith(".")
    assert "Traceback" not in message
    assert "Error" not in message
    # No chained decoder exception travels with it (raised "from None" or outside a handler).
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    return message


@pytest.fixture(scope="module")
def sample_full() -> np.ndarray:
    return np.asarray(Image.open(SAMPLE).convert("RGB"))


# --- real JPEG, draft scaling --------------------------------------------------------------


def test_real_jpeg_full_resolution_matches_pillow(sample_full: np.ndarray) -> None:
    decoded = decode_image(SAMPLE)
    assert decoded.source_format == "JPEG"
    assert decoded.original_size == (2734, 1822)
    assert decoded.laterality is None  # only DICOM carries laterality; names are the caller's
    assert decoded.pixels.shape == (1822, 2734, 3)
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.flags.c_contiguous
    np.testing.assert_array_equal(decoded.pixels, sample_full)
    np.testing.assert_array_equal(load_rgb(str(SAMPLE)), sample_full)


def test_real_jpeg_draft_keeps_both_sides_at_least_min_side(sample_full: np.ndarray) -> None:
    decoded = decode_image(SAMPLE, min_side=224)
    height, width, _ = decoded.pixels.shape
    # 1/8 DCT scaling: ceil(2734 / 8) x ceil(1822 / 8); no resampling happens in here.
    assert (width, height) == (342, 228)
    assert min(width, height) >= 224
    assert min(width, height) < 2 * 224
    assert decoded.original_size == (2734, 1822)
    # The DCT-scaled picture is the same picture: per-channel means agree with the full-size
    # decode within 1 level (measured: 0.11).
    assert np.abs(decoded.pixels.mean(axis=(0, 1)) - sample_full.mean(axis=(0, 1))).max() < 1.0


def test_draft_scale_follows_min_side() -> None:
    data = _encode(Image.fromarray(_two_colour(1000, 600)), "JPEG", quality=90)
    expected = {
        100: (250, 150),
        160: (500, 300),
        300: (500, 300),
        301: (1000, 600),
        5000: (1000, 600),
    }
    for min_side, size in expected.items():
        decoded = decode_image(data, min_side=min_side)
        assert decoded.pixels.shape[1::-1] == size, min_side
        assert decoded.original_size == (1000, 600)


def test_draft_with_exif_rotation_keeps_both_sides_and_reports_rotated_size() -> None:
    data = _with_orientation(Image.fromarray(_two_colour(1000, 600)), "JPEG", 6, quality=90)
    decoded = decode_image(data, min_side=100)
    # Raw 1000 x 600 drafted by 1/4 to 250 x 150, then turned upright to 150 x 250.
    assert decoded.pixels.shape == (250, 150, 3)
    assert decoded.original_size == (600, 1000)
    # Rotating the red-left / blue-right picture clockwise puts red on top.
    np.testing.assert_allclose(decoded.pixels[10, 75], RED, atol=12)
    np.testing.assert_allclose(decoded.pixels[240, 75], BLUE, atol=12)


def test_format_is_sniffed_from_content_not_name() -> None:
    # In the CSDI sample this file is an opaque RGBA PNG named .jpg.
    path = SAMPLE.with_name("HJX1.jpg")
    reference = np.asarray(Image.open(path))
    assert reference.shape == (1654, 1696, 4)
    assert (reference[..., 3] == 255).all()
    decoded = decode_image(path)
    assert decoded.source_format == "PNG"
    assert decoded.original_size == (1696, 1654)
    np.testing.assert_array_equal(decoded.pixels, reference[..., :3])
    # Not a JPEG, so not drafted: box-reduced after decoding by 1654 // 224 = 7.
    small = decode_image(path, min_side=224)
    assert small.pixels.shape == (237, 243, 3)
    assert small.original_size == (1696, 1654)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "BMP"])
def test_min_side_box_reduces_other_formats_right_after_decoding(fmt: str) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (600, 1000, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    # 600 // 100 = 6 is the largest whole factor keeping both sides >= 100: 1000 x 600 -> 167 x 100.
    decoded = decode_image(data, min_side=100)
    assert decoded.pixels.shape == (100, 167, 3)
    assert decoded.original_size == (1000, 600)
    # Pillow's box reduction of the full decode, pixel for pixel; a 6 x 6 block worked by hand.
    np.testing.assert_array_equal(decoded.pixels, np.asarray(Image.fromarray(pixels).reduce(6)))
    block = pixels[6:12, 12:18].reshape(36, 3).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(decoded.pixels[1, 2], block, atol=0.5 + 1e-9)
    # Too small a request to halve the picture leaves it as it is.
    assert decode_image(data, min_side=301).pixels.shape == (600, 1000, 3)


def test_min_side_reduces_palette_images_through_rgb() -> None:
    pixels = np.zeros((400, 400, 3), np.uint8)
    pixels[:, 200:] = (10, 200, 30)
    data = _encode(Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG")
    decoded = decode_image(data, min_side=100)
    assert decoded.pixels.shape == (100, 100, 3)
    np.testing.assert_array_equal(decoded.pixels[:, :50], 0)
    np.testing.assert_array_equal(decoded.pixels[:, 50:], np.broadcast_to((10, 200, 30), (100, 50, 3)))


def test_whole_decoded_formats_are_refused_above_their_own_cap() -> None:
    # 6400 x 6400 = 40.96 M pixels: under MAX_PIXELS, above what a PNG may cost to decode whole.
    start = time.perf_counter()
    message = _refused(_png_claiming(6400, 6400))
    assert time.perf_counter() - start < 0.5  # refused from the header, nothing decoded
    assert message == (
        "The image is too large: 6400 x 6400 pixels exceeds the limit of 30000000 pixels."
    )
    assert MAX_WHOLE_DECODE_PIXELS == 30_000_000
    # A progressive JPEG holds every coefficient whatever its scale, so it has the same cap;
    # a baseline JPEG of the same size is decoded at 1/8 scale.
    big = Image.new("RGB", (6400, 6400), (90, 40, 30))
    progressive = _encode(big, "JPEG", quality=50, progressive=True)
    assert "6400 x 6400 pixels exceeds the limit of 30000000 pixels" in _refused(progressive, min_side=512)
    assert decode_image(_encode(big, "JPEG", quality=50), min_side=512).pixels.shape == (800, 800, 3)
    # A caller's smaller limit still wins.
    assert "limit of 50000 pixels" in _refused(_png_claiming(300, 200), max_pixels=50_000)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "224"])
def test_min_side_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="min_side must be a positive integer"):
        decode_image(_two_colour(), min_side=bad)  # type: ignore[arg-type]


# --- EXIF orientation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "red_corner", "upright_size"),
    [
        (3, (slice(-10, None), slice(-10, None)), (40, 20)),  # 180 degrees: raw bottom-right
        (6, (slice(-10, None), slice(0, 10)), (20, 40)),  # 90 clockwise: raw bottom-left
        (8, (slice(0, 10), slice(-10, None)), (20, 40)),  # 90 anticlockwise: raw top-right
    ],
)
def test_exif_rotation_puts_the_marked_corner_top_left(
    orientation: int, red_corner: tuple[slice, slice], upright_size: tuple[int, int]
) -> None:
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:] = BLUE
    raw[red_corner] = RED
    decoded = decode_image(_with_orientation(Image.fromarray(raw), "JPEG", orientation, quality=95))
    assert decoded.original_size == upright_size
    assert decoded.pixels.shape == (upright_size[1], upright_size[0], 3)
    np.testing.assert_allclose(decoded.pixels[3, 3], RED, atol=12)
    np.testing.assert_allclose(decoded.pixels[-3, -3], BLUE, atol=12)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_orientations_match_pillow_exif_transpose(orientation: int) -> None:
    raw = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = _with_orientation(Image.fromarray(raw), "PNG", orientation)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode_image(data)
    np.testing.assert_array_equal(decoded.pixels, reference)
    assert decoded.original_size == reference.shape[1::-1]
    assert decoded.pixels.flags.c_contiguous


def test_tiff_orientation_tag_is_applied() -> None:
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:] = BLUE
    raw[-10:, :10] = RED
    data = _encode(Image.fromarray(raw), "TIFF", tiffinfo={0x0112: 6})
    decoded = decode_image(data)
    assert decoded.pixels.shape == (40, 20, 3)
    assert tuple(decoded.pixels[3, 3]) == RED


# --- formats and modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options", "name"),
    [
        ("PNG", {}, "PNG"),
        ("BMP", {}, "BMP"),
        ("TIFF", {}, "TIFF"),
        ("TIFF", {"compression": "tiff_lzw"}, "TIFF"),
        ("WEBP", {"lossless": True}, "WEBP"),
    ],
)
def test_lossless_formats_decode_exactly(fmt: str, options: dict, name: str) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    decoded = decode_image(_encode(Image.fromarray(pixels), fmt, **options))
    assert decoded.source_format == name
    assert decoded.original_size == (17, 13)
    np.testing.assert_array_equal(decoded.pixels, pixels)


def test_jpeg_decodes_within_compression_error() -> None:
    decoded = decode_image(_encode(Image.fromarray(_two_colour()), "JPEG", quality=95))
    assert decoded.source_format == "JPEG"
    np.testing.assert_allclose(decoded.pixels[24, 10], RED, atol=8)
    np.testing.assert_allclose(decoded.pixels[24, 50], BLUE, atol=8)


def test_gif_first_frame_only() -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in (RED, (0, 255, 0), BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue())
    assert decoded.source_format == "GIF"
    assert (decoded.pixels == RED).all()


def test_multipage_tiff_first_page_only() -> None:
    pages = [Image.new("RGB", (4, 4), colour) for colour in (BLUE, RED)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    assert (load_rgb(buffer.getvalue()) == BLUE).all()


def test_mode_1_is_black_and_white() -> None:
    bits = Image.new("1", (3, 1))
    bits.putdata([0, 255, 0])
    pixels = load_rgb(_encode(bits, "PNG"))
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 255, 0])
    assert (pixels[..., 0] == pixels[..., 2]).all()


def test_mode_l_is_grey_in_three_channels() -> None:
    grey = np.array([[0, 17, 200, 255]], np.uint8)
    pixels = load_rgb(_encode(Image.fromarray(grey), "PNG"))
    np.testing.assert_array_equal(pixels, np.repeat(grey[..., None], 3, axis=2))


def test_mode_la_is_composited_over_black() -> None:
    # grey 200 at alpha 128: 200 * 128 / 255 = 100.4 -> 100
    pixels = load_rgb(_encode(Image.new("LA", (2, 2), (200, 128)), "PNG"))
    assert (pixels == 100).all()


def test_palette_without_transparency_is_exact() -> None:
    palette = Image.new("P", (4, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.putdata([0, 1, 2, 3])
    for fmt in ("PNG", "GIF", "BMP"):
        pixels = load_rgb(_encode(palette, fmt))
        np.testing.assert_array_equal(pixels[0], [RED, (0, 255, 0), BLUE, (9, 9, 9)], err_msg=fmt)


def test_palette_transparent_index_becomes_black() -> None:
    palette = Image.new("P", (4, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.putdata([0, 1, 2, 3])
    for fmt in ("PNG", "GIF"):
        pixels = load_rgb(_encode(palette, fmt, transparency=1))
        np.testing.assert_array_equal(pixels[0], [RED, (0, 0, 0), BLUE, (9, 9, 9)], err_msg=fmt)


def test_rgba_half_transparent_red_over_black() -> None:
    image = Image.new("RGBA", (3, 2), (255, 0, 0, 128))
    for fmt in ("PNG", "TIFF", "WEBP"):
        options = {"lossless": True} if fmt == "WEBP" else {}
        pixels = load_rgb(_encode(image, fmt, **options))
        # 255 * 128 / 255 = 128: transparency darkens towards the black photo background.
        np.testing.assert_allclose(pixels.reshape(-1, 3), [(128, 0, 0)] * 6, atol=1, err_msg=fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_converts_back_to_rgb(fmt: str) -> None:
    colours = np.array([[[200, 30, 90], [10, 220, 40], [250, 250, 250], [0, 0, 0]]], np.uint8)
    cmyk = Image.fromarray(np.repeat(np.repeat(colours, 8, axis=0), 8, axis=1)).convert("CMYK")
    pixels = load_rgb(_encode(cmyk, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    np.testing.assert_allclose(pixels[4, 4::8], colours[0], atol=4)


def test_sixteen_bit_grey_png_rounds_v_over_257() -> None:
    values = np.array([[0, 128, 129, 257 * 100, 32896, 65535]], np.uint16)
    # 128 / 257 = 0.498 -> 0; 129 / 257 = 0.502 -> 1; 32896 / 257 = 128 exactly
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    np.testing.assert_array_equal(load_rgb(data)[0, :, 1], [0, 0, 1, 100, 128, 255])


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_sixteen_bit_grey_tiff(mode: str) -> None:
    values = np.array([[0, 257 * 100, 65535]], ">u2" if mode == "I;16B" else "<u2")
    data = _encode(Image.frombytes(mode, (3, 1), values.tobytes()), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    np.testing.assert_array_equal(load_rgb(data)[0, :, 0], [0, 100, 255])


def test_mode_i_holds_sixteen_bit_values() -> None:
    values = np.array([[0, 257 * 100, 65535]], np.int32)
    data = _encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    np.testing.assert_array_equal(load_rgb(data)[0, :, 2], [0, 100, 255])
    out_of_range = _encode(Image.fromarray(np.array([[0, 70000]], np.int32)), "TIFF")
    assert "outside 0 to 65535" in _refused(out_of_range)


def test_mode_f_in_unit_range() -> None:
    values = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    data = _encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    # 0.25 * 255 = 63.75 -> 64; 0.5 * 255 = 127.5 -> 128 (round half to even)
    np.testing.assert_array_equal(load_rgb(data)[0, :, 0], [0, 64, 128, 255])
    assert "expected values in [0, 1]" in _refused(_encode(Image.fromarray(values * 300), "TIFF"))


def test_sixteen_bit_rgb_png() -> None:
    values = np.array([[[0, 257 * 100, 65535], [1000, 40000, 65000]]], np.uint16)
    pixels = load_rgb(_png_rgb16(values))
    # Multiples of 257 come out exact; Pillow keeps the high byte, within 1 of rounding v / 257.
    np.testing.assert_array_equal(pixels[0, 0], [0, 100, 255])
    assert np.abs(pixels[0, 1].astype(int) - np.rint(values[0, 1] / 257)).max() <= 1


# --- other sources -------------------------------------------------------------------------


def test_sources_paths_bytes_and_streams_agree(tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "eye.png"
    path.write_bytes(data)
    stream = io.BytesIO(b"xx" + data)
    stream.seek(2)
    sources = [path, str(path), data, bytearray(data), memoryview(data), stream]
    for source in sources:
        np.testing.assert_array_equal(load_rgb(source), pixels, err_msg=type(source).__name__)
    assert stream.tell() == 2  # the caller's stream is left where it was
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load_rgb(handle), pixels)


def test_numpy_arrays() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    decoded = decode_image(rgb)
    np.testing.assert_array_equal(decoded.pixels, rgb)
    assert decoded.source_format == "ARRAY"
    assert decoded.original_size == (5, 4)
    assert decoded.pixels is not rgb
    assert rgb.flags.writeable
    grey = rgb[..., 0]
    np.testing.assert_array_equal(load_rgb(grey)[..., 2], grey)
    np.testing.assert_array_equal(load_rgb(grey[..., None])[..., 1], grey)
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0] = [(255, 0, 0, 128), (10, 20, 30, 255)]
    np.testing.assert_array_equal(load_rgb(rgba)[0], [(128, 0, 0), (10, 20, 30)])
    opaque = np.dstack([rgb, np.full((4, 5), 255, np.uint8)])
    np.testing.assert_array_equal(load_rgb(opaque), rgb)
    assert opaque.flags.writeable
    np.testing.assert_array_equal(
        load_rgb(np.array([[0, 128, 129, 25700, 65535]], np.uint16))[0, :, 0], [0, 0, 1, 100, 255]
    )
    np.testing.assert_array_equal(load_rgb(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(load_rgb(np.array([[0.0, 0.25, 1.0]]))[0, :, 0], [0, 64, 255])
    np.testing.assert_array_equal(load_rgb(rgb[:, ::-1]), rgb[:, ::-1])  # strided views work


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.zeros((4, 4), np.int64), "data type int64"),
        (np.zeros((4, 4), np.int8), "data type int8"),
        (np.full((4, 4), 1.5), "expected values in [0, 1]"),
        (np.full((4, 4), -0.1, np.float32), "expected values in [0, 1]"),
        (np.full((4, 4), np.nan), "not finite"),
        (np.zeros((4, 4, 2), np.uint8), "has shape (4, 4, 2)"),
        (np.zeros((4,), np.uint8), "has shape (4,)"),
        (np.zeros((0, 4, 3), np.uint8), "zero width or height"),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray, expected: str) -> None:
    assert expected in _refused(array)


def test_pil_image_source_is_used_as_given() -> None:
    image = Image.new("RGBA", (3, 2), (255, 0, 0, 128))
    decoded = decode_image(image)
    assert (decoded.pixels == (128, 0, 0)).all()
    assert decoded.source_format == "PIL"
    assert image.mode == "RGBA"
    assert image.size == (3, 2)
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:] = BLUE
    raw[-10:, :10] = RED
    opened = Image.open(io.BytesIO(_with_orientation(Image.fromarray(raw), "PNG", 6)))
    decoded = decode_image(opened)
    assert decoded.source_format == "PNG"
    assert decoded.original_size == (20, 40)
    assert tuple(decoded.pixels[3, 3]) == RED


def test_unsupported_source_types_are_programming_errors() -> None:
    with pytest.raises(TypeError, match="must be a path, bytes"):
        decode_image(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        decode_image(io.StringIO("not bytes"))  # type: ignore[arg-type]


def test_result_is_frozen_and_read_only() -> None:
    decoded = decode_image(_two_colour())
    assert isinstance(decoded, DecodedImage)
    with pytest.raises(AttributeError):
        decoded.laterality = "OD"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        decoded.pixels[0, 0] = 0


# --- refusals ------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_one_clean_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "Doe_Jane_scans"
    folder.mkdir()
    empty = folder / "Doe_Jane_OD.jpg"
    empty.write_bytes(b"")
    text = folder / "Doe_Jane_notes.png"
    text.write_bytes(b"Patient Doe Jane, right eye, mild opacity.\n" * 20)
    fifo = folder / "Doe_Jane_pipe.jpg"
    os.mkfifo(fifo)
    random_bytes = np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    cases = {
        "empty bytes": (b"", "empty"),
        "empty file": (empty, "empty"),
        "text file": (text, "not a supported image"),
        "pdf header": (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n",
            "not a supported image",
        ),
        "random bytes": (random_bytes, "not a supported image"),
        "folder": (folder, "folder"),
        "missing file": (folder / "Doe_Jane_OS.jpg", "does not exist"),
        "below a file": (empty / "x.png", "does not exist"),
        "fifo": (fifo, "not a regular file"),
        "nul in path": (str(folder / "Doe\x00Jane.png"), "cannot be read"),
        "zero-size png": (_png_claiming(0, 5), "corrupt"),
    }
    for label, (source, expected) in cases.items():
        message = _refused(source)
        assert expected in message, label
        assert "Doe" not in message, label
        assert "Jane" not in message, label
        assert str(tmp_path) not in message, label


def test_unreadable_streams_are_refused() -> None:
    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("disk /mnt/Doe_Jane failed")

    assert "cannot be read" in _refused(Failing())
    closed = io.BytesIO(b"x")
    closed.close()
    assert "cannot be read" in _refused(closed)


def _truncations() -> dict[str, bytes]:
    pixels = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    jpeg = _encode(Image.fromarray(pixels), "JPEG", quality=90)
    png = _encode(Image.fromarray(pixels), "PNG")
    assert len(jpeg) > 2000
    return {
        "jpeg half": jpeg[: len(jpeg) // 2],
        "jpeg minus 300 bytes": jpeg[:-300],
        "png half": png[: len(png) // 2],
        "tiff half": _encode(Image.fromarray(pixels), "TIFF")[:30000],
    }


@pytest.mark.parametrize("pillow_pads_truncated", [False, True])
def test_truncated_images_are_refused_even_if_pillow_would_pad_them(
    pillow_pads_truncated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other code in the process may set this flag; decoding must refuse truncation regardless.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", pillow_pads_truncated)
    for label, data in _truncations().items():
        assert "truncated" in _refused(data), label
        assert "truncated" in _refused(data, min_side=16), label
    assert ImageFile.LOAD_TRUNCATED_IMAGES is pillow_pads_truncated


# --- decompression bombs -------------------------------------------------------------------


def test_bomb_is_refused_from_the_header_without_decoding() -> None:
    data = _png_claiming(12_000, 10_000)  # 120 M pixels claimed by 100 bytes
    assert len(data) < 200
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        message = _refused(data)
    assert time.perf_counter() - start < 0.5  # decoding 120 M pixels would take seconds
    assert message == (
        "The image is too large: 12000 x 10000 pixels exceeds the limit of 100000000 pixels."
    )


def test_bomb_beyond_pillows_own_hard_limit() -> None:
    assert "exceeds the limit of 100000000 pixels" in _refused(_png_claiming(20_000, 20_000))


def test_bomb_limit_does_not_depend_on_pillow_global(monkeypatch: pytest.MonkeyPatch) -> None:
    # Training scripts often switch Pillow's own check off; ours must still hold.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert "20000 x 20000" in _refused(_png_claiming(20_000, 20_000))
    assert "300 x 200 pixels exceeds the limit of 50000" in _refused(
        _png_claiming(300, 200), max_pixels=50_000
    )


def test_max_pixels_boundary() -> None:
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).original_size == (100, 100)
    assert "limit of 9999 pixels" in _refused(data, max_pixels=9_999)
    assert "limit of 9999 pixels" in _refused(np.zeros((100, 100, 3), np.uint8), max_pixels=9_999)
    assert MAX_PIXELS == 100_000_000
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


# --- DICOM ---------------------------------------------------------------------------------


def test_dicom_monochrome_16_bit_scales_by_bits_stored() -> None:
    stored = np.array([[0, 4095], [2048, 1000]], "<u2")
    data = _dicom(stored.tobytes(), 2, 2, bits=16, stored=12, ImageLaterality="R")
    decoded = decode_image(data)
    # v * 255 / 4095: 2048 -> 127.5 -> 128, 1000 -> 62.3 -> 62 (no min-max stretch)
    np.testing.assert_array_equal(decoded.pixels[..., 0], [[0, 255], [128, 62]])
    assert (decoded.pixels[..., 0] == decoded.pixels[..., 2]).all()
    assert decoded.laterality == "OD"
    assert decoded.source_format == "DICOM"
    assert decoded.original_size == (2, 2)
    assert PATIENT_NAME not in repr(decoded)
    assert "Doe" not in repr(decoded)


def test_dicom_signed_pixels_are_offset_before_scaling() -> None:
    stored = np.array([[-2048, 2047, 0]], "<i2")
    decoded = decode_image(_dicom(stored.tobytes(), 1, 3, bits=16, stored=12, signed=True))
    # -2048 .. 2047 -> 0 .. 4095; 0 -> 2048 -> 128
    np.testing.assert_array_equal(decoded.pixels[0, :, 1], [0, 255, 128])


def test_dicom_monochrome1_is_inverted_and_series_laterality_is_used() -> None:
    stored = np.array([[0, 255], [100, 7]], np.uint8)
    decoded = decode_image(
        _dicom(stored.tobytes(), 2, 2, photometric="MONOCHROME1", Laterality="L")
    )
    np.testing.assert_array_equal(decoded.pixels[..., 1], [[255, 0], [155, 248]])
    assert decoded.laterality == "OS"


@pytest.mark.parametrize("planar", [0, 1])
def test_dicom_rgb_both_planar_configurations(planar: int) -> None:
    pixels = np.random.default_rng(6).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    stored = pixels if planar == 0 else pixels.transpose(2, 0, 1)
    decoded = decode_image(
        _dicom(stored.tobytes(), 4, 6, samples=3, photometric="RGB", planar=planar)
    )
    np.testing.assert_array_equal(decoded.pixels, pixels)
    assert decoded.laterality is None


def test_dicom_jpeg_baseline_ybr_full_422() -> None:
    decoded = decode_image(_jpeg_dicom(_two_colour(), ImageLaterality="L"))
    assert decoded.pixels.shape == (48, 64, 3)
    assert decoded.original_size == (64, 48)
    np.testing.assert_allclose(decoded.pixels[24, 10], RED, atol=8)
    np.testing.assert_allclose(decoded.pixels[24, 50], BLUE, atol=8)
    assert decoded.laterality == "OS"


@pytest.mark.parametrize("marked", [True, False])
def test_dicom_jpeg_baseline_rgb_without_colour_transform(marked: bool) -> None:
    colours = np.zeros((16, 32, 3), np.uint8)
    colours[:, :16] = (200, 30, 90)
    colours[:, 16:] = (20, 160, 240)
    frame = _rgb_jpeg(colours, marked=marked)
    if not marked:  # plain Pillow would misread these components as YCbCr
        misread = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"))
        assert np.abs(misread[8, 8].astype(int) - colours[8, 8]).max() > 40
    data = _dicom(
        encapsulate([frame]), 16, 32, samples=3, photometric="RGB", syntax=JPEGBaseline8Bit
    )
    pixels = load_rgb(data)
    np.testing.assert_allclose(pixels[8, 8], colours[8, 8], atol=4)
    np.testing.assert_allclose(pixels[8, 24], colours[8, 24], atol=4)


def test_dicom_multiframe_gives_first_frame() -> None:
    first = np.array([[10, 20], [30, 40]], np.uint8)
    data = _dicom(np.stack([first, 255 - first]).tobytes(), 2, 2, frames=2)
    np.testing.assert_array_equal(load_rgb(data)[..., 0], first)


def test_dicom_laterality_both_or_unknown_is_none() -> None:
    stored = bytes(4)
    assert (
        decode_image(_dicom(stored, 2, 2, ImageLaterality="B", Laterality="R")).laterality is None
    )
    assert decode_image(_dicom(stored, 2, 2)).laterality is None


def test_dicom_without_preamble_is_read_from_a_dcm_file(tmp_path: Path) -> None:
    data = _dicom(bytes([1, 2, 3, 4]), 2, 2, preamble=False)
    assert data[128:132] != b"DICM"
    path = tmp_path / "scan.dcm"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_rgb(path)[..., 0], [[1, 2], [3, 4]])
    with open(path, "rb") as handle:  # an upload keeps its name, and so its suffix
        np.testing.assert_array_equal(load_rgb(handle)[..., 0], [[1, 2], [3, 4]])


def test_dicom_refusals_name_the_problem_not_the_patient(caplog: pytest.LogCaptureFixture) -> None:
    stored = np.array([[0, 4095], [2048, 1000]], "<u2").tobytes()
    good = _dicom(stored, 2, 2, bits=16, stored=12)
    cases = {
        "broken jpeg-ls": (
            _dicom(encapsulate([b"\xff\xd8" + bytes(64)]), 8, 8, syntax=JPEGLSLossless),
            "corrupt or incomplete",
        ),
        "video": (
            _dicom(encapsulate([bytes(64)]), 8, 8, syntax="1.2.840.10008.1.2.4.100"),
            "uses MPEG2 Main Profile / Main Level, which cannot be decoded here; expected uncompressed, "
            "JPEG, JPEG-LS, JPEG 2000 or RLE pixel data",
        ),
        "broken jpeg": (
            _dicom(
                encapsulate([b"\xff\xd8" + bytes(64)]),
                8,
                8,
                samples=3,
                photometric="YBR_FULL_422",
                syntax=JPEGBaseline8Bit,
            ),
            "corrupt or incomplete",
        ),
        "cut pixel data": (good[:-3], "corrupt or incomplete"),
        "cut header": (good[:200], "no pixel data"),
        "broken jpeg 2000": (
            _dicom(encapsulate([bytes(64)]), 8, 8, syntax="1.2.840.10008.1.2.4.90"),
            "corrupt or incomplete",
        ),
        "unknown syntax": (
            # pydicom will not write an unknown syntax, so swap in one of the same length.
            _dicom(encapsulate([bytes(64)]), 8, 8, syntax=JPEGLSLossless).replace(
                JPEGLSLossless.encode(), b"1.2.840.10008.9.99.999"
            ),
            "unrecognised transfer syntax",
        ),
        "palette": (
            _dicom(bytes(4), 2, 2, photometric="PALETTE COLOR"),
            "PALETTE COLOR is not supported",
        ),
        "bomb": (_dicom(bytes(4), 20_000, 20_000), "20000 x 20000 pixels exceeds the limit"),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for label, (data, expected) in cases.items():
            message = _refused(data)
            assert expected in message, label
            assert "Doe" not in message, label
            assert "MRN" not in message, label
            assert "1950" not in message, label
        decode_image(good)
    assert not [str(w.message) for w in caught if "Doe" in str(w.message)]
    assert caplog.records == []  # nothing is logged, identifying or not


# --- file names, PNG export, hashing -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DLY-OD.jpg", "OD"),
        ("LZ-OS.jpg", "OS"),
        ("OS-2.png", "OS"),
        ("patient_17_OD1.tif", "OD"),
        ("left_eye.png", "OS"),
        ("RightEye.JPG", "OD"),
        ("scan-RIGHT.dcm", "OD"),
        ("/data/Doe_Jane/visit_left.jpg", "OS"),
        ("C:\\clinic\\Doe\\OD.jpg", "OD"),
        (Path("exports") / "eye_os.png", "OS"),
        ("photos.jpg", None),
        ("GOOD_image.png", None),
        ("HZH1.jpg", None),
        ("OD_vs_OS.png", None),
        ("left-right.png", None),
        ("eye_R.jpg", None),
        ("", None),
    ],
)
def test_laterality_from_filename(name: str, expected: str | None) -> None:
    assert laterality_from_filename(name) == expected


def test_encode_png_round_trip_without_metadata() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (31, 45, 3), dtype=np.uint8)
    first, second = encode_png(pixels), encode_png(pixels.copy())
    assert first == second
    chunks = _png_chunk_types(first)
    assert (
        chunks[0] == b"IHDR"
    )
    assert (
        chunks[-1] == b"IEND"
    )
    assert (
        set(chunks) == {b"IHDR", b"IDAT", b"IEND"}
    )
    np.testing.assert_array_equal(load_rgb(first), pixels)
    # A read-only, reversed view (as decode_image returns after orientation) encodes too.
    view = decode_image(pixels).pixels[:, ::-1]
    np.testing.assert_array_equal(load_rgb(encode_png(view)), pixels[:, ::-1])


def test_encode_png_drops_metadata_of_a_decoded_photo() -> None:
    exif = Image.Exif()
    exif[0x010E] = "Doe Jane right eye"  # ImageDescription
    exif[0x0112] = 6
    photo = _encode(Image.fromarray(_two_colour()), "JPEG", exif=exif, quality=95)
    png = encode_png(load_rgb(photo))
    assert b"Doe" not in png
    assert b"Exif" not in png
    assert set(_png_chunk_types(png)) == {b"IHDR", b"IDAT", b"IEND"}


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)],
)
def test_encode_png_refuses_non_rgb8(bad: np.ndarray) -> None:
    with pytest.raises(ImageError, match=r"Expected non-empty \(H, W, 3\) uint8 RGB"):
        encode_png(bad)


def test_sha256_bytes_known_vector() -> None:
    assert (
        sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256_bytes(b"") == hashlib.sha256(b"").hexdigest()


def test_image_extensions() -> None:
    assert {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".gif",
        ".dcm",
    } == IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    assert isinstance(IMAGE_EXTENSIONS, frozenset)
    assert issubclass(ImageError, ValueError)
    assert imaging.__doc__
    assert "\n" not in imaging.__doc__.strip()


def test_dicom_is_reduced_to_the_size_used_inside_the_decoding_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Like a photograph: box-reduced by the largest factor keeping both sides >= min_side, and the
    full-size frame held only inside the process-wide decoding budget."""
    import contextlib

    from components.imaging import dicom

    pixels = np.random.default_rng(9).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    data = _dicom(pixels.tobytes(), 300, 400, samples=3, photometric="RGB")
    held = []

    @contextlib.contextmanager
    def room(width: int, height: int):
        held.append((width, height))
        yield

    monkeypatch.setattr(dicom, "decoding_room", room)
    decoded = decode_image(data, min_side=96)
    assert held == [(400, 300)]
    # 300 // 96 = 3: each output pixel is the mean of a 3 x 3 block, as worked out here with numpy.
    blocks = pixels[:, :399].reshape(100, 3, 133, 3, 3)
    expected = np.rint(blocks.astype(np.float64).mean(axis=(1, 3))).astype(np.uint8)
    # 400 = 3 x 133 + 1: Pillow keeps the last, partial block as a 134th column.
    assert decoded.pixels.shape == (100, 134, 3)
    assert np.abs(decoded.pixels[:, :133].astype(int) - expected.astype(int)).max() <= 1
    np.testing.assert_allclose(decoded.pixels[:, 133], pixels[:, 399].reshape(100, 3, 3).mean(axis=1), atol=1)
    assert decoded.original_size == (400, 300)
    # Without min_side the frame comes back whole.
    np.testing.assert_array_equal(decode_image(data).pixels, pixels)
