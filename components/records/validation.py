"""The checks every value passes before the record store keeps it; each refusal says what it expected."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import numpy as np

from components.base.text import CONTROL, CONTROL_BUT_NEWLINE
from components.records.errors import ValidationError
from components.records.model import PATIENT_FIELDS
from components.screening.vocabulary import SEXES

__all__ = [
    "PSEUDO_ID_PATTERN",
    "birth_date",
    "calendar_date",
    "choice",
    "free_text",
    "patient_values",
    "plain_json",
    "pseudo_id",
    "required_text",
    "row_id",
    "sex",
    "sha256_hex",
    "text",
    "unit_float",
]

# A letter or digit first, so that no ID is "." or "..", starts like an option ("-x") or hides a file (".x").
PSEUDO_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_PSEUDO_ID = re.compile(PSEUDO_ID_PATTERN)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_DEPTH = 6


def sha256_hex(value: object, what: str) -> str:
    """A SHA-256 digest as 64 lower-case hexadecimal characters."""
    if not isinstance(value, str) or _SHA256.fullmatch(value.lower()) is None:
        raise ValidationError(f"{what} must be a SHA-256 digest written as 64 hexadecimal characters")
    return value.lower()


def row_id(value: object, what: str) -> int:
    """A database ID: an integer, not a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValidationError(f"{what} must be an integer")
    return int(value)


def pseudo_id(value: object) -> str:
    """A pseudonymous patient ID (``PSEUDO_ID_PATTERN``), which also names nothing outside the database."""
    if not isinstance(value, str) or _PSEUDO_ID.fullmatch(value) is None:
        raise ValidationError("a pseudonymous ID must be 1 to 64 letters, digits, '-', '_' or '.', "
                              "starting with a letter or a digit, with no spaces")
    return value


def free_text(value: str, what: str, *, newlines: bool = False) -> str:
    """``value`` unchanged when it holds no control character (newlines allowed where ``newlines``); else refused.

    Tabs are control characters here: a name or an ID has no use for them, and notes take spaces.
    """
    found = (CONTROL_BUT_NEWLINE if newlines else CONTROL).search(value)
    if found is not None:
        raise ValidationError(f"{what} must not contain control characters (found U+{ord(found.group()):04X})")
    return value


def choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    """One of the ``allowed`` codes, exactly."""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(f"{what} must be one of: {', '.join(allowed)}")
    return value


def text(value: object, what: str, max_length: int, *, required: bool) -> str | None:
    """Stripped text of at most ``max_length`` characters; empty optional text becomes None."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    value = free_text(value.strip(), what)
    if required and not value:
        raise ValidationError(f"{what} must not be empty")
    if len(value) > max_length:
        raise ValidationError(f"{what} must be at most {max_length} characters")
    return value or None


def required_text(value: object, what: str, max_length: int) -> str:
    """Stripped, non-empty text of at most ``max_length`` characters."""
    checked = text(value, what, max_length, required=True)
    assert checked is not None  # text() raised for an empty required value
    return checked


def calendar_date(value: object, what: str) -> date | None:
    """A date, or text written as YYYY-MM-DD; a date and time is refused."""
    if value is None:
        return None
    if isinstance(value, datetime):
        raise ValidationError(f"{what} must be a calendar date, not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(f"{what} must be a date written as YYYY-MM-DD") from None
    raise ValidationError(f"{what} must be a date or text written as YYYY-MM-DD")


def birth_date(value: object) -> date | None:
    """A birth date that is not in the future."""
    born = calendar_date(value, "the birth date")
    if born is not None and born > date.today():
        raise ValidationError("the birth date must not be in the future")
    return born


def sex(value: object) -> str | None:
    """One of the sex codes, or None."""
    return None if value is None else choice(value, SEXES, "sex")


def _name(value: object) -> str | None:
    return text(value, "the name", 200, required=False)


_PATIENT_CHECKS: dict[str, Callable[[object], Any]] = {"name": _name, "birth_date": birth_date, "sex": sex}


def patient_values(values: Mapping[str, object]) -> dict[str, Any]:
    """The checked patient fields, in the order given; a field other than these is refused."""
    unknown = sorted(set(values) - set(PATIENT_FIELDS))
    if unknown:
        raise ValidationError(f"only {', '.join(PATIENT_FIELDS)} can be updated, not {', '.join(unknown)}")
    return {key: _PATIENT_CHECKS[key](value) for key, value in values.items()}


def unit_float(value: object, what: str) -> float:
    """A real number between 0 and 1 inclusive, as a float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{what} must be a number between 0 and 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError(f"{what} must be a number between 0 and 1")
    return number


def _plain_scalar(value: object, what: str, max_text: int | None) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValidationError(f"{what} must hold only finite numbers")
        return number
    if isinstance(value, str):
        if max_text is not None and len(value) > max_text:
            raise ValidationError(f"{what} must hold text of at most {max_text} characters")
        return value
    raise ValidationError(f"{what} must hold only text, numbers, booleans, lists and mappings")


def plain_json(value: object, what: str, *, max_text: int | None, forbidden: frozenset[str], depth: int = 0) -> Any:
    """Return ``value`` as plain JSON; refuse anything else (bytes, arrays, NaN, deep nesting).

    A mapping key in ``forbidden`` (compared in lower case) is refused wherever it appears.
    """
    if depth > _MAX_DEPTH:
        raise ValidationError(f"{what} must not be nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        return [plain_json(item, what, max_text=max_text, forbidden=forbidden, depth=depth + 1) for item in value]
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what} must use text keys")
            if key.lower() in forbidden:
                raise ValidationError(f"{what} must not carry names or image data")
            result[key] = plain_json(item, what, max_text=max_text, forbidden=forbidden, depth=depth + 1)
        return result
    return _plain_scalar(value, what, max_text)
