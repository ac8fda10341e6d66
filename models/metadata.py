"""Checking a checkpoint's metadata (and its model card's) with bounds and types before a model is built from it."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.base.errors import CataractCamError

__all__ = [
    "CLASS_COUNT_RANGE",
    "CLASS_NAME_MAX_CHARS",
    "INPUT_SIZE_RANGE",
    "CheckedMetadata",
    "CheckpointError",
    "check_class_names",
    "check_dropout",
    "check_metadata",
]

INPUT_SIZE_RANGE = (32, 1024)
"""Smallest and largest square input, in pixels: below 32 EfficientNet-B0's last map is 1x1; above 1024 one
image costs seconds and gigabytes."""
CLASS_COUNT_RANGE = (2, 20)
CLASS_NAME_MAX_CHARS = 64


class CheckpointError(CataractCamError, ValueError):
    """A checkpoint could not be loaded; the message says what did not match."""


@dataclass(frozen=True)
class CheckedMetadata:
    """The metadata fields a classifier is built with, every one within its bounds."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    threshold: float


def _pick(meta: Mapping[str, Any], card: Mapping[str, Any], key: str) -> tuple[Any, str] | None:
    """The value of ``key`` and where it was found; the checkpoint wins over its card."""
    for source, where in ((meta, "checkpoint"), (card, "model card")):
        if source.get(key) is not None:
            return source[key], where
    return None


def _is_number(value: Any) -> bool:
    # bool is an int to Python, but a threshold of True is a mistake, not 1.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _input_size(found: tuple[Any, str] | None, default: int) -> int:
    if found is None:
        return default
    value, where = found
    low, high = INPUT_SIZE_RANGE
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_number(value) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"The {where}'s input_size is {value!r}; expected a whole number of pixels "
                              f"from {low} to {high}.")
    return value


def _triple(value: Any, field: str, where: str, *, positive: bool) -> tuple[float, float, float]:
    wanted = "3 finite numbers above 0" if positive else "3 finite numbers"
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3
            or not all(_is_number(v) and math.isfinite(v) for v in value)
            or (positive and not all(v > 0 for v in value))):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise CheckpointError(f"The {where}'s normalization {field} is {shown}; expected {wanted} (R, G, B).")
    return float(value[0]), float(value[1]), float(value[2])


def _threshold(found: tuple[Any, str] | None) -> float:
    if found is None:
        return 0.5
    value, where = found
    if not _is_number(value) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise CheckpointError(f"The {where}'s threshold is {value!r}; expected a probability from 0 to 1.")
    return float(value)


def check_metadata(meta: Mapping[str, Any], card: Mapping[str, Any], *, default_input_size: int,
                   default_mean: tuple[float, float, float],
                   default_std: tuple[float, float, float]) -> CheckedMetadata:
    """Input size, normalization and threshold from a checkpoint's metadata or its card, each within bounds.

    Raises:
        TypeError: ``meta`` or ``card`` is not a mapping.
        CheckpointError: a field of the wrong type or out of bounds; the message names the field.
    """
    if not isinstance(meta, Mapping) or not isinstance(card, Mapping):
        raise TypeError("check_metadata expects the checkpoint's metadata and its card as mappings.")
    mean, std = default_mean, default_std
    found_norm = _pick(meta, card, "normalization")
    if found_norm is not None:
        norm, where = found_norm
        if not isinstance(norm, Mapping):
            raise CheckpointError(f"The {where}'s normalization is a {type(norm).__name__}; "
                                  "expected a mapping with mean and std.")
        if norm.get("mean") is not None:
            mean = _triple(norm["mean"], "mean", where, positive=False)
        if norm.get("std") is not None:
            std = _triple(norm["std"], "std", where, positive=True)
    return CheckedMetadata(input_size=_input_size(_pick(meta, card, "input_size"), default_input_size),
                           mean=mean, std=std, threshold=_threshold(_pick(meta, card, "threshold")))


def check_class_names(names: Any, outputs: int, where: str) -> tuple[str, ...]:
    """Class names as 2 to 20 distinct plain strings, one per output of the head.

    Raises:
        CheckpointError: not a list of strings, the wrong count, an empty, over-long or repeated
            name, or a name holding control characters.
    """
    low, high = CLASS_COUNT_RANGE
    if isinstance(names, (str, bytes, Mapping)) or not isinstance(names, Sequence):
        raise CheckpointError(f"The {where}'s class_names is a {type(names).__name__}; expected a list of "
                              f"{low} to {high} names.")
    if not low <= len(names) <= high:
        raise CheckpointError(f"The {where}'s class_names has {len(names)} names; expected {low} to {high}.")
    for name in names:
        if not isinstance(name, str):
            raise CheckpointError(f"The {where}'s class_names holds a {type(name).__name__}; expected plain text.")
        if not name.strip() or len(name) > CLASS_NAME_MAX_CHARS:
            raise CheckpointError(f"The {where}'s class_names holds an empty name or one over "
                                  f"{CLASS_NAME_MAX_CHARS} characters.")
        if any(unicodedata.category(ch).startswith("C") for ch in name):
            raise CheckpointError(f"The {where}'s class_names holds a name with control characters.")
    if len(set(names)) != len(names):
        raise CheckpointError(f"The {where}'s class_names repeats a name.")
    if len(names) != outputs:
        raise CheckpointError(f"The {where} names {len(names)} classes but its head has {outputs} outputs.")
    return tuple(names)


def check_dropout(value: Any) -> float:
    """A head's dropout probability, in [0, 1).

    Raises:
        CheckpointError: not a finite number in [0, 1).
    """
    if not _is_number(value) or not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise CheckpointError(f"The checkpoint's head has a dropout p of {value!r}; expected a number in [0, 1).")
    return float(value)
