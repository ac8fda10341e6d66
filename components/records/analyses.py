"""A model's analysis as stored: the checked prediction, and the map as compressed float32."""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from components.lens.attention import AttentionResult
from components.records.errors import ValidationError
from components.records.model import AnalysisRecord, to_record
from components.records.schema import AnalysisRow
from components.records.validation import plain_json, required_text, sha256_hex, unit_float

__all__ = ["analysis_columns", "analysis_record", "decode_cam", "encode_cam"]


def encode_cam(cam: object) -> bytes:
    """A non-empty, finite 2-D map as a zlib-compressed float32 .npy, which loads without pickle."""
    array = np.asarray(cam)
    if array.ndim != 2 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValidationError("expected the class-activation map as a non-empty 2-D array of numbers")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValidationError("the class-activation map must hold only finite numbers")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return zlib.compress(buffer.getvalue(), 6)


def decode_cam(blob: bytes) -> np.ndarray:
    """The stored map, read-only, so a record's map cannot be changed in place."""
    cam = np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)
    cam.setflags(write=False)
    return cam


def _probabilities(probabilities: object) -> dict[str, float]:
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise ValidationError("the probabilities must be a non-empty mapping of class name to number")
    return {
        required_text(name, "a class name", 64): unit_float(value, "a class probability")
        for name, value in probabilities.items()
    }


def analysis_columns(
    *,
    model_sha256: object,
    model_name: object,
    method: object,
    layer: object,
    target: object,
    prediction: object,
    confidence: object,
    probabilities: object,
    cam: object,
    attention: object,
) -> dict[str, Any]:
    """The checked column values of an analysis, the map encoded; ValidationError names what is wrong."""
    columns: dict[str, Any] = {
        "model_sha256": sha256_hex(model_sha256, "the model digest"),
        "model_name": required_text(model_name, "the model name", 200),
        "method": required_text(method, "the method", 64),
        "layer": required_text(layer, "the layer", 200),
        "target": required_text(target, "the target class", 64),
        "prediction": required_text(prediction, "the prediction", 64),
        "confidence": unit_float(confidence, "the confidence"),
        "probabilities": _probabilities(probabilities),
        "cam": encode_cam(cam),
    }
    if attention is not None and not isinstance(attention, AttentionResult):
        raise ValidationError("the attention check's result must be an AttentionResult")
    columns["attention"] = (
        None
        if attention is None
        else plain_json(attention.as_dict(), "the attention summary", max_text=None, forbidden=frozenset())
    )
    return columns


def analysis_record(row: AnalysisRow) -> AnalysisRecord:
    """The frozen record of a stored analysis, its map decoded."""
    attention = None if row.attention is None else AttentionResult.from_dict(row.attention)
    return to_record(AnalysisRecord, row, probabilities=dict(row.probabilities), cam=decode_cam(row.cam),
                     attention=attention)
