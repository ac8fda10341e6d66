"""Control characters in text that leaves the program: which they are, and text cleaned of them."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONTROL", "CONTROL_BUT_NEWLINE", "without_controls"]

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators. They reach a PDF, a DICOM
# attribute (where an ESC switches the character set) and FHIR (whose strings forbid them) unseen.
CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_BUT_NEWLINE: Final = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def without_controls(text: str, *, newlines: bool = False) -> str:
    """``text`` with each run of control characters replaced by one space (newlines kept where ``newlines``).

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"Expected text, got {type(text).__name__}.")
    return (CONTROL_BUT_NEWLINE if newlines else CONTROL).sub(" ", text)
