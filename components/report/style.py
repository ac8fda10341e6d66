"""The report's look: page geometry, colours and paragraph styles."""

from __future__ import annotations

import functools
from typing import Any, Final

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm

from components.report.fonts import BOLD, MONO, REGULAR, fonts

PAGE_W, PAGE_H = A4
MARGIN_X: Final = 15 * mm
MARGIN_TOP: Final = 24 * mm
MARGIN_BOTTOM: Final = 17 * mm

INK: Final = colors.HexColor("#1A1A1A")
MUTED: Final = colors.HexColor("#555555")
ACCENT: Final = colors.HexColor("#1F3A5F")
RULE: Final = colors.HexColor("#B8C2CC")
SHADE: Final = colors.HexColor("#F1F4F7")
ALERT: Final = colors.HexColor("#B3261E")
ALERT_BG: Final = colors.HexColor("#FCEBEA")
WARN: Final = colors.HexColor("#8A4B00")
WARN_BG: Final = colors.HexColor("#FFF3DC")
OK: Final = colors.HexColor("#1E6B35")
OK_BG: Final = colors.HexColor("#EAF5EC")


@functools.cache
def styles() -> dict[str, ParagraphStyle]:
    """The paragraph styles by name; the fonts are registered first, since the styles name them."""
    fonts()
    base = ParagraphStyle("body", fontName=REGULAR, fontSize=9.2, leading=12.2, textColor=INK)

    def make(name: str, **kw: Any) -> ParagraphStyle:
        return ParagraphStyle(name, parent=base, **kw)

    return {
        "body": base,
        "small": make("small", fontSize=7.8, leading=10, textColor=MUTED),
        "label": make("label", fontSize=7.8, leading=10.5, textColor=MUTED),
        "value": make("value"),
        "mono": make("mono", fontName=MONO, fontSize=7.8, leading=10.5),
        "h2": make("h2", fontName=BOLD, fontSize=12, leading=15, textColor=ACCENT, spaceBefore=10),
        "h3": make(
            "h3", fontName=BOLD, fontSize=9.6, leading=12.5, textColor=INK, spaceBefore=5, spaceAfter=2, keepWithNext=1
        ),
        "caption": make("caption", fontSize=7.6, leading=9.8, textColor=MUTED),
        "box": make("box", fontName=BOLD, fontSize=10, leading=13),
        "box_big": make("box_big", fontName=BOLD, fontSize=12.5, leading=16),
        "bullet": make("bullet", leftIndent=11, bulletIndent=2, spaceAfter=2.5),
        "notes": make("notes", leftIndent=6, spaceAfter=2),
        "head_left": make("head_left", fontSize=7.6, leading=9.5, textColor=MUTED),
        "head_right": make("head_right", fontSize=7.6, leading=9.5, textColor=MUTED, alignment=TA_RIGHT),
    }


def coloured(style: ParagraphStyle, colour: colors.Color, name: str) -> ParagraphStyle:
    """The style in another text colour."""
    return ParagraphStyle(name, parent=style, textColor=colour)
