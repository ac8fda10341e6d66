"""A clinician's free-text notes: the documented cap on their length and the tidying every store and report applies.

Notes are capped at :data:`NOTES_MAX_CHARS` characters. Runs of blank lines collapse to one blank
line and trailing spaces go, so ten thousand newlines cannot make a report of hundreds of pages;
in a report, at most :data:`NOTES_MAX_PARAGRAPHS` lines are set as their own paragraphs and any
further lines are kept, joined into the last one.
"""

from __future__ import annotations

import re

__all__ = ["NOTES_MAX_CHARS", "NOTES_MAX_PARAGRAPHS", "note_paragraphs", "tidy_notes"]

NOTES_MAX_CHARS = 10_000
"""The longest notes kept, in characters, after tidying (about two printed pages)."""
NOTES_MAX_PARAGRAPHS = 40
"""The most lines of notes a report sets as separate paragraphs."""

_TRAILING_SPACE = re.compile(r"[ \t\f\v]+\n")
_BLANK_RUN = re.compile(r"\n{3,}")
_JOIN = " / "


def tidy_notes(notes: str) -> str:
    """The notes with one kind of newline, no trailing spaces, blank runs collapsed to one blank line, stripped.

    Raises:
        TypeError: ``notes`` is not a str.
    """
    if not isinstance(notes, str):
        raise TypeError(f"The notes must be text, got {type(notes).__name__}.")
    text = notes.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _BLANK_RUN.sub("\n\n", text).strip()


def note_paragraphs(notes: str) -> list[str]:
    """Tidied notes as the lines a report sets ("" for a blank line), at most NOTES_MAX_PARAGRAPHS of them.

    Lines beyond the limit are joined with " / " onto the last paragraph, so nothing is dropped.

    Raises:
        TypeError: ``notes`` is not a str.
        ValueError: the notes are longer than NOTES_MAX_CHARS once tidied.
    """
    text = tidy_notes(notes)
    if len(text) > NOTES_MAX_CHARS:
        raise ValueError(f"The notes are longer than {NOTES_MAX_CHARS} characters; shorten them.")
    if not text:
        return []
    lines = text.split("\n")
    if len(lines) <= NOTES_MAX_PARAGRAPHS:
        return lines
    head = lines[: NOTES_MAX_PARAGRAPHS - 1]
    rest = _JOIN.join(line for line in lines[NOTES_MAX_PARAGRAPHS - 1:] if line.strip())
    return [*head, rest]
