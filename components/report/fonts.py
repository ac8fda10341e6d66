"""The report's fonts: matplotlib's DejaVu faces for Latin and most scripts, CID fonts for CJK."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

from components.report.content import ReportError

REGULAR: Final = "DejaVuSans"
BOLD: Final = "DejaVuSans-Bold"
ITALIC: Final = "DejaVuSans-Oblique"
BOLD_ITALIC: Final = "DejaVuSans-BoldOblique"
MONO: Final = "DejaVuSansMono"
CJK_FONTS: Final = {"zh": "STSong-Light", "ja": "HeiseiMin-W3", "ko": "HYSMyeongJo-Medium"}


@dataclass(frozen=True)
class Fonts:
    covered: frozenset[int]  # code points both DejaVu Sans faces can draw


@functools.cache
def fonts() -> Fonts:
    """Registers the fonts with reportlab once per process; what the DejaVu faces cover."""
    import matplotlib  # ships DejaVu, so no font is downloaded or bundled

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    faces = {}
    for name in (REGULAR, BOLD, ITALIC, BOLD_ITALIC, MONO):
        path = folder / f"{name}.ttf"
        if not path.is_file():
            raise ReportError(
                f"The font {name}.ttf was not found in matplotlib's data folder; "
                "expected matplotlib's bundled DejaVu fonts."
            )
        faces[name] = TTFont(name, str(path))
        pdfmetrics.registerFont(faces[name])
    pdfmetrics.registerFontFamily(REGULAR, normal=REGULAR, bold=BOLD, italic=ITALIC, boldItalic=BOLD_ITALIC)
    for cid in CJK_FONTS.values():
        pdfmetrics.registerFont(UnicodeCIDFont(cid))
    covered = set(faces[REGULAR].face.charToGlyph) & set(faces[BOLD].face.charToGlyph)
    return Fonts(covered=frozenset(covered))


def is_cjk(cp: int) -> bool:
    """True for a code point in a Chinese, Japanese or Korean block."""
    return (
        0x1100 <= cp <= 0x11FF
        or 0x2E80 <= cp <= 0x9FFF
        or 0xA960 <= cp <= 0xA97F
        or 0xAC00 <= cp <= 0xD7FF
        or 0xF900 <= cp <= 0xFAFF
        or 0xFE30 <= cp <= 0xFE4F
        or 0xFF00 <= cp <= 0xFFEF
        or 0x20000 <= cp <= 0x3FFFF
    )


def cjk_font(text: str) -> str:
    """One CID font per string: kana means Japanese, Hangul Korean, otherwise Chinese."""
    if any(0x3040 <= ord(c) <= 0x30FF or 0x31F0 <= ord(c) <= 0x31FF for c in text):
        return CJK_FONTS["ja"]
    if any(0xAC00 <= ord(c) <= 0xD7AF or 0x1100 <= ord(c) <= 0x11FF or 0x3130 <= ord(c) <= 0x318F for c in text):
        return CJK_FONTS["ko"]
    return CJK_FONTS["zh"]
