"""Exams and analyses: metadata-free PNGs named by their SHA-256, ordering, maps kept bit for bit."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.records import NotFound, RecordStore, ValidationError
from components.screening.vocabulary import OFF_SKIN
from tests.support import checked


def _png_chunk_types(data: bytes) -> list[str]:
    """Walk the PNG chunk list by hand, so the check does not trust the encoder under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    assert offset == len(data)
    return types


def test_exam_image_is_a_metadata_free_png_named_by_its_sha(
    store: RecordStore, folder: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    store.create_patient("EYE-1", name="Dora Example")
    pixels = make_pixels(1)
    exam = store.add_exam("EYE-1", eye="OD", pixels=pixels, exam_date=date(2024, 3, 5))

    path = folder / "images" / exam.image_sha256[:2] / f"{exam.image_sha256}.png"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == exam.image_sha256
    chunks = _png_chunk_types(data)
    assert chunks[0] == "IHDR"
    assert chunks[-1] == "IEND"
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}  # no tEXt, iTXt, zTXt, eXIf, tIME, pHYs...
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), pixels)
    np.testing.assert_array_equal(store.get_image(exam.image_sha256), pixels)
    for identifying in ("EYE-1", "Dora"):
        assert identifying not in str(path.relative_to(folder))
        assert identifying.encode() not in data
    # Patient data is private to the user who runs the dashboard.
    for private in (folder, folder / "images", path.parent):
        assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0

    # Content addressing: the same pixels are one file, whatever exam refers to them.
    again = store.add_exam("EYE-1", eye="OS", pixels=pixels.copy())
    assert again.image_sha256 == exam.image_sha256 == store.put_image(pixels)
    assert [p.name for p in (folder / "images").rglob("*") if p.is_file()] == [path.name]


def test_exams_list_right_eye_first_then_by_date(store: RecordStore, make_pixels: Callable[..., np.ndarray]) -> None:
    store.create_patient("ORD")
    late_os = store.add_exam("ORD", eye="OS", pixels=make_pixels(2), exam_date="2024-01-02")
    late_od = store.add_exam("ORD", eye="OD", pixels=make_pixels(3), exam_date="2024-03-01")
    early_od = store.add_exam("ORD", eye="OD", pixels=make_pixels(4), exam_date="2024-01-05")
    fundus = store.add_exam("ORD", eye="OS", pixels=make_pixels(5), modality="fundus")
    assert fundus.exam_date == date.today()
    assert [e.id for e in store.exams("ORD")] == [early_od.id, late_od.id, late_os.id, fundus.id]


def test_exam_validation_writes_nothing(
    store: RecordStore, folder: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    store.create_patient("V1")
    with pytest.raises(ValidationError, match="the eye must be one of: OD, OS"):
        store.add_exam("V1", eye="left", pixels=make_pixels(6))
    with pytest.raises(ValidationError, match="modality must be one of"):
        store.add_exam("V1", eye="OD", pixels=make_pixels(6), modality="xray")
    with pytest.raises(ValidationError, match="uint8"):
        store.add_exam("V1", eye="OD", pixels=make_pixels(6).astype(np.float32))
    with pytest.raises(ValidationError, match="uint8"):
        store.add_exam("V1", eye="OD", pixels=make_pixels(6)[:, :, 0])
    with pytest.raises(NotFound):
        store.add_exam("nobody", eye="OD", pixels=make_pixels(6))
    assert store.exams("V1") == []
    assert not any(p.is_file() for p in (folder / "images").rglob("*"))


def test_analysis_round_trips_the_cam_exactly(
    store: RecordStore,
    make_pixels: Callable[..., np.ndarray],
    analysis_kwargs: Callable[..., dict[str, object]],
    model_sha: str,
) -> None:
    store.create_patient("AN")
    exam = store.add_exam("AN", eye="OD", pixels=make_pixels(7))
    assert store.latest_analysis(exam.id) is None

    rng = np.random.default_rng(8)
    cam = rng.random((224, 224), dtype=np.float32)
    cam[0, :3] = [0.0, 1.0, np.float32(1 / 65535)]
    first = store.add_analysis(exam.id, **analysis_kwargs(cam))
    second_cam = np.linspace(0, 1, 7 * 9, dtype=np.float64).reshape(7, 9)
    second = store.add_analysis(
        exam.id,
        **analysis_kwargs(
            second_cam,
            method="gradcam++",
            prediction="Normal",
            confidence=np.float32(0.75),
            probabilities={"Cataract": 0.25, "Normal": 0.75},
            attention=checked(OFF_SKIN, lens_fraction=0.8125, peak_on_skin=True),
        ),
    )
    latest = store.latest_analysis(exam.id)
    assert latest is not None
    assert latest.id == second.id > first.id
    assert latest.cam.dtype == np.float32
    assert latest.cam.shape == (7, 9)
    assert np.max(np.abs(latest.cam - second_cam.astype(np.float32))) == 0.0
    assert (latest.prediction, latest.confidence, latest.method) == ("Normal", 0.75, "gradcam++")
    assert latest.probabilities == {"Cataract": 0.25, "Normal": 0.75}
    assert latest.attention is not None
    assert latest.attention.as_dict() == checked(OFF_SKIN, lens_fraction=0.8125, peak_on_skin=True).as_dict()
    assert latest.model_sha256 == model_sha
    # The first analysis is kept whole; its map comes back bit for bit.
    assert first.cam.dtype == np.float32
    np.testing.assert_array_equal(first.cam, cam)
    with pytest.raises(ValueError, match="read-only"):
        latest.cam[0, 0] = 0.5  # records are read-only

    for bad, message in [
        ({"cam": np.full((4, 4), np.nan)}, "finite"),
        ({"cam": np.zeros(5)}, "2-D array"),
        ({"confidence": 1.5}, "between 0 and 1"),
        ({"model_sha256": "abc"}, "64 hexadecimal"),
        ({"probabilities": {}}, "non-empty mapping"),
    ]:
        with pytest.raises(ValidationError, match=message):
            store.add_analysis(exam.id, **analysis_kwargs(cam, **bad))
    with pytest.raises(NotFound):
        store.add_analysis(10_000, **analysis_kwargs(cam))
    assert store.latest_analysis(exam.id) == second
