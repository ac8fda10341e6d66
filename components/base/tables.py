"""CSV files the product writes and reads, with cells a spreadsheet would run as formulas neutralised.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (``=HYPERLINK(...)`` in a file name sends data away when clicked). As
OWASP's "CSV Injection" page advises, such a cell is written with a single quote in front, which a
spreadsheet shows as text. A cell that already begins with a quote gets one more, so reading back
with :func:`read_csv` (which removes one leading quote from exactly those cells) returns every cell as
it was. Plain numbers, negative ones included, are left alone: they are not formulas.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components.base.files import atomic_write_bytes

__all__ = [
    "FORMULA_STARTS",
    "CsvAppender",
    "csv_bytes",
    "neutralise",
    "parse_csv",
    "read_csv",
    "restore",
    "write_csv",
]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet treat a cell as a formula (OWASP's list)."""

_QUOTE = "'"
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def neutralise(cell: object) -> str:
    """The text a CSV cell holds: a formula-like value prefixed with a single quote, numbers as they are.

    Raises:
        TypeError: ``cell`` is bytes (a CSV holds text).
    """
    if isinstance(cell, (bytes, bytearray)):
        raise TypeError("A CSV cell must be text or a number, not bytes.")
    text = "" if cell is None else str(cell)
    if (text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text)) or text.startswith(_QUOTE):
        return _QUOTE + text
    return text


def restore(cell: str) -> str:
    """The value :func:`neutralise` was given, from the text it wrote.

    Raises:
        TypeError: ``cell`` is not a string.
    """
    if not isinstance(cell, str):
        raise TypeError(f"restore expects the text of a CSV cell, got {type(cell).__name__}.")
    # Only a quote the writer could have added is removed; a hand-made "'abc" stays as it is.
    if cell.startswith(_QUOTE) and cell[1:2] != "" and (cell[1] in FORMULA_STARTS or cell[1] == _QUOTE):
        return cell[1:]
    return cell


def csv_bytes(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """UTF-8 CSV (RFC 4180: CRLF line ends) with a header and one line per row, every cell neutralised.

    Missing keys are empty cells. The CRLF line end also makes the writer quote a cell holding a lone
    carriage return, which a reader would otherwise take for the end of the line.

    Raises:
        ValueError: a row has a key that is not a field.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[neutralise(f) for f in fieldnames], lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        unknown = set(row) - set(fieldnames)
        if unknown:
            raise ValueError(f"A CSV row has {len(unknown)} key(s) that are not among its fields.")
        writer.writerow({neutralise(k): neutralise(row.get(k)) for k in fieldnames})
    return buffer.getvalue().encode("utf-8")


def write_csv(path: str | os.PathLike[str], fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """:func:`csv_bytes` written whole or not at all.

    Raises:
        ValueError: a row has a key that is not a field.
        OSError: the file cannot be written (nothing is left half-written).
    """
    atomic_write_bytes(Path(path), csv_bytes(fieldnames, rows))


def read_csv(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV, every cell as it was before :func:`neutralise`.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not UTF-8 text.
    """
    with Path(path).open(newline="", encoding="utf-8") as handle:  # keep a CR inside a cell as it is
        return parse_csv(handle.read())


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of CSV text, every cell as it was before :func:`neutralise`."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    rows = [{restore(k): restore(v if isinstance(v, str) else "") for k, v in row.items() if k is not None}
            for row in reader]
    return [restore(h) for h in header], rows


class CsvAppender:
    """Rows appended to a CSV as they come, each one flushed: a run killed half-way keeps every row written.

    The file is what :func:`csv_bytes` would write for the same rows (header, CRLF, cells
    neutralised), so :func:`read_csv` reads it back. With ``resume`` an existing file is continued:
    its complete rows are kept (:attr:`earlier`), a last line cut off mid-write is dropped, and
    new rows follow; a file with another header is refused rather than mixed.

    Raises:
        ValueError: resuming a file whose header is not ``fieldnames``, or one that is not UTF-8 text.
        OSError: the file cannot be read or written.
    """

    def __init__(self, path: str | os.PathLike[str], fieldnames: Sequence[str], *, resume: bool = False) -> None:
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        self.earlier: list[dict[str, str]] = []
        kept = ""
        if resume and self.path.is_file():
            text = self.path.read_bytes().decode("utf-8")
            end = text.rfind("\r\n")  # rows end in CRLF: whatever follows the last one was cut off
            kept = text[: end + 2] if end >= 0 else ""
            header, self.earlier = parse_csv(kept)
            if kept and header != self.fieldnames:
                raise ValueError("The existing CSV has other columns; expected the same run's columns.")
        self._handle = self.path.open("w" if not kept else "r+", encoding="utf-8", newline="")
        if kept:
            self._handle.seek(len(kept.encode("utf-8")))
            self._handle.truncate()
        else:
            self._handle.write(csv_bytes(self.fieldnames, []).decode("utf-8"))
            self._handle.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing keys are empty cells) and flush it to the operating system.

        Raises:
            ValueError: the row has a key that is not a field.
        """
        line = csv_bytes(self.fieldnames, [row]).decode("utf-8").split("\r\n", 1)[1]
        self._handle.write(line)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CsvAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

