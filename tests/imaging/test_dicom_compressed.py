"""Compressed DICOM pixel data (JPEG 2000, JPEG-LS, RLE) decoded by pydicom's plugins, inside the decoding budget.

The files are made here from a real CSDI photograph with pydicom's own encoders (pylibjpeg-openjpeg
for JPEG 2000, pyjpegls for JPEG-LS, pydicom's RLE), not by the code under test; a lossless
syntax must give back exactly the pixels of the same photograph stored uncompressed. JPEG
Lossless, which no Python encoder writes, is made by Orthanc in tests/interop/test_interop_pacs.py.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from components.imaging import decode_image
from components.imaging.decoding import ImageError
from tests.support import CSDI

OPHTHALMIC_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"


@pytest.fixture(scope="module")
def photograph() -> np.ndarray:
    """A real fundus photograph (CSDI, CC BY 4.0), reduced to 240 x 160: colour, edges, a dark surround."""
    with Image.open(CSDI / "DLY-OD.jpg") as image:
        return np.asarray(image.convert("RGB").resize((240, 160), Image.Resampling.BOX))


def _dataset(pixels: np.ndarray, *, bits_stored: int | None = None) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPHTHALMIC_8BIT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = OPHTHALMIC_8BIT, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-4711", "19500101"
    ds.Modality, ds.ImageLaterality = "OP", "L"
    ds.Rows, ds.Columns = pixels.shape[:2]
    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored = allocated, bits_stored or allocated
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelData = pixels.tobytes()
    return ds


def _bytes(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _compressed(pixels: np.ndarray, syntax: str, *, bits_stored: int | None = None, **options: object) -> bytes:
    ds = _dataset(pixels, bits_stored=bits_stored)
    ds.compress(syntax, pixels, **options)
    return _bytes(ds)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless],
                         ids=["jpeg2000-lossless", "jpeg-ls-lossless", "rle"])
def test_lossless_syntaxes_give_back_the_uncompressed_pixels(photograph, syntax, caplog):
    data = _compressed(photograph, syntax)
    caplog.set_level(logging.DEBUG)
    plain = decode_image(_bytes(_dataset(photograph)))
    decoded = decode_image(data)
    assert decoded.source_format == "DICOM"
    assert decoded.laterality == "OS"
    np.testing.assert_array_equal(decoded.pixels, photograph)
    np.testing.assert_array_equal(decoded.pixels, plain.pixels)
    assert [r for r in caplog.records if r.levelno >= logging.INFO or r.exc_info] == []


@pytest.mark.parametrize(("syntax", "options", "bound"), [
    (JPEG2000, {"j2k_psnr": [42]}, 38.0),
    (JPEGLSNearLossless, {"jls_error": 2}, 40.0),
], ids=["jpeg2000", "jpeg-ls-near-lossless"])
def test_lossy_syntaxes_decode_within_their_error(photograph, syntax, options, bound):
    decoded = decode_image(_compressed(photograph, syntax, **options)).pixels.astype(np.float64)
    mse = float(np.mean((decoded - photograph) ** 2))
    assert mse > 0  # lossy indeed
    assert 10 * np.log10(255**2 / mse) > bound
    if syntax == JPEGLSNearLossless:
        assert np.abs(decoded - photograph).max() <= 2  # near-lossless bounds every pixel's error


def test_jpeg2000_colour_transform_is_undone_by_the_codec(photograph):
    """Lossless JPEG 2000 of a colour photograph is labelled YBR_RCT (PS3.5 8.2.4): the codec undoes it."""
    ds = _dataset(photograph)
    ds.compress(JPEG2000Lossless, photograph)  # the reversible colour transform is on by default
    ds.PhotometricInterpretation = "YBR_RCT"
    np.testing.assert_array_equal(decode_image(_bytes(ds)).pixels, photograph)


def test_twelve_bit_grey_jpeg2000_scales_like_the_uncompressed_file(photograph):
    grey = (photograph.astype(np.uint16).sum(axis=2) * 4095 // 765).astype(np.uint16)
    plain = decode_image(_bytes(_dataset(grey, bits_stored=12))).pixels
    decoded = decode_image(_compressed(grey, JPEG2000Lossless, bits_stored=12)).pixels
    np.testing.assert_array_equal(decoded, plain)
    assert decoded.shape == (*grey.shape, 3)
    assert int(decoded[..., 0].max()) == round(int(grey.max()) * 255 / 4095)


def _corrupt(syntax: str) -> bytes:
    ds = _dataset(np.zeros((8, 8), np.uint8))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])  # a codestream cut after its first marker
    ds["PixelData"].VR = "OB"
    return _bytes(ds)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless],
                         ids=["jpeg2000", "jpeg-ls", "rle"])
def test_a_broken_codestream_is_one_sentence_and_nothing_is_logged(syntax, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageError) as caught:
        decode_image(_corrupt(syntax))
    message = str(caught.value)
    assert message == "The DICOM pixel data is corrupt or incomplete and cannot be decoded."
    # pydicom logs a failed plugin with its traceback: none gets out, at any level.
    assert [r for r in caplog.records if r.levelno >= logging.INFO or r.exc_info] == []


def test_a_compressed_frame_larger_than_the_limit_is_refused_before_decoding():
    ds = _dataset(np.zeros((8, 8), np.uint8))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.Rows = ds.Columns = 20_000
    ds.PixelData = encapsulate([bytes(64)])
    ds["PixelData"].VR = "OB"
    with pytest.raises(ImageError, match="20000 x 20000 pixels exceeds the limit"):
        decode_image(_bytes(ds))


def test_a_missing_decoder_is_named_in_one_sentence(monkeypatch, photograph):
    from pydicom.pixels.decoders import base

    class Unavailable:
        is_available = False

    monkeypatch.setattr(base, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(ImageError) as caught:
        decode_image(_compressed(photograph, JPEGLSLossless))
    assert str(caught.value) == ("The DICOM pixel data uses JPEG-LS Lossless Image Compression, and its decoder "
                                 "(pylibjpeg-libjpeg) is not installed; install it to read this file.")


def test_a_jpeg2000_ophthalmic_photograph_is_analysed(photograph, tmp_path):
    """The camera's JPEG 2000 file goes through the batch path like any photograph: a prediction, a map, panels."""
    from components.workflows.batch import explain_files
    from models import load_classifier

    path = tmp_path / "camera.dcm"
    path.write_bytes(_compressed(photograph, JPEG2000Lossless))
    clf = load_classifier(None)
    (item,) = explain_files(clf, [path], out_dir=tmp_path / "out", typicality=True, attention=True)
    assert item.error is None
    assert item.explanation is not None
    assert item.explanation.prediction in clf.class_names
    assert item.typicality is not None
    assert item.typicality.available
    assert item.attention is not None
    assert item.panel_path is not None
    assert item.panel_path.exists()
    # The same photograph stored uncompressed gives the same answer: the decode is exact.
    plain_path = tmp_path / "plain.dcm"
    plain_path.write_bytes(_bytes(_dataset(photograph)))
    (plain,) = explain_files(clf, [plain_path])
    assert plain.explanation is not None
    assert plain.explanation.probabilities == item.explanation.probabilities
