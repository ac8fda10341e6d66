"""Text for the page: user input made safe as markup, and values formatted as the report prints them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from importlib import metadata as importlib_metadata
from typing import Any, Final
from xml.sax.saxutils import escape

import numpy as np

from components.report.fonts import cjk_font, fonts, is_cjk

DOT: Final = " &nbsp;&middot;&nbsp; "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_METRIC_NAMES: Final = {
    "auc": "AUC",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "ece": "ECE",
    "mcc": "MCC",
}


def clean(value: Any) -> str:
    """The value as text with one kind of newline, tabs as spaces and no control characters."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROL.sub("", text)


def markup(value: Any) -> str:
    """User text as Paragraph markup: escaped, CJK set in a CID font, newlines as line breaks."""
    text = clean(value)
    covered = fonts().covered
    cid = cjk_font(text)
    out: list[str] = []
    run: list[str] = []
    run_cjk = False

    def flush() -> None:
        if run:
            chunk = escape("".join(run)).replace("\n", "<br/>")
            out.append(f'<font name="{cid}">{chunk}</font>' if run_cjk else chunk)
            run.clear()

    for ch in text:
        cp = ord(ch)
        # Characters neither font has stay in DejaVu, which draws its missing-glyph box.
        cjk = cp not in covered and is_cjk(cp) and ch != "\n"
        if cjk != run_cjk:
            flush()
            run_cjk = cjk
        run.append(ch)
    flush()
    return "".join(out)


def fmt_datetime(value: datetime) -> str:
    """Minutes and the time zone: its name when it has one, its offset from UTC always."""
    text = f"{value:%Y-%m-%d %H:%M}"
    if value.tzinfo is None or value.utcoffset() is None:
        return text
    name = value.tzname() or ""
    raw = value.strftime("%z")
    offset = f"UTC{raw[:3]}:{raw[3:5]}"
    if name in ("UTC", "GMT") and raw == "+0000":
        return f"{text} UTC"
    if not name or name.startswith(("UTC", "GMT")):
        return f"{text} {offset}"
    return f"{text} {name} ({offset})"


def fmt_number(value: float) -> str:
    """A card figure: integers as such, otherwise three significant-ish decimals."""
    if not math.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):d}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def fmt_value(value: Any) -> str | None:
    """A card or check value as text; None for absent values, which are left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return fmt_number(float(value))
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, date):  # a datetime is a date too
        return fmt_datetime(value) if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, (Mapping, list, tuple)):
        return _fmt_collection(value)
    return str(value)


def _fmt_collection(value: Mapping[Any, Any] | list[Any] | tuple[Any, ...]) -> str | None:
    if isinstance(value, Mapping):
        parts = [f"{label(k)}: {v}" for k, v in ((k, fmt_value(v)) for k, v in value.items()) if v is not None]
        return "; ".join(parts) or None
    items = [p for p in (fmt_value(v) for v in value) if p is not None]
    return ", ".join(items) or None


def label(key: Any) -> str:
    """A card or check key as a label: ``deletion_auc`` -> ``Deletion AUC``."""
    text = str(key).strip()
    if text.lower() in _METRIC_NAMES:
        return _METRIC_NAMES[text.lower()]
    words = [_METRIC_NAMES.get(w.lower(), w) for w in text.replace("_", " ").split(" ")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def age(birth: date, on: date) -> int | None:
    """Whole years on the day; None when the birth date lies after it."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return years if years >= 0 else None


def package_version() -> str:
    """The installed cataract-cam's version, or "unknown" when run from a bare checkout."""
    try:
        return importlib_metadata.version("cataract-cam")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def pdf_date(value: datetime) -> str:
    """A PDF date string in UTC."""
    utc = value.astimezone(UTC)
    return f"D:{utc:%Y%m%d%H%M%S}+00'00'"
