"""The page and its building blocks: header and footer on every page, boxes, field tables, grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, Spacer, Table, TableStyle

from components.report.content import REPORT_TITLE
from components.report.fonts import BOLD, REGULAR
from components.report.style import (
    ACCENT,
    ALERT,
    ALERT_BG,
    INK,
    MARGIN_X,
    MUTED,
    PAGE_H,
    PAGE_W,
    RULE,
    SHADE,
    coloured,
    styles,
)
from components.screening.vocabulary import DEMO_WARNING


@dataclass(frozen=True)
class Furniture:
    """What the header and footer of every page say."""

    report_id: str
    generated: str
    patient_id_markup: str
    demo: bool
    footer: str


class ReportCanvas(Canvas):
    """Holds each finished page until the end, so every header can say how many pages there are."""

    def __init__(self, *args: Any, furniture: Furniture, pdf_date: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._furniture = furniture
        self._held: list[dict[str, Any]] = []
        # The creation date is the report's own timestamp: truthful and reproducible.
        self.setDateFormatter(lambda *_ymdhms: pdf_date)

    def showPage(self) -> None:  # reportlab's name
        self._held.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._held)
        for number, state in enumerate(self._held, start=1):
            self.__dict__.update(state)
            self.saveState()
            self._draw_header(number, total)
            self._draw_footer()
            self.restoreState()
            super().showPage()
        super().save()

    def _draw_header(self, number: int, total: int) -> None:
        f = self._furniture
        left, right = MARGIN_X, PAGE_W - MARGIN_X
        top = PAGE_H - 11 * mm
        self.setFillColor(ACCENT)
        self.setFont(BOLD, 11.5)
        self.drawString(left, top, REPORT_TITLE)
        self.setFont(BOLD, 9)
        self.setFillColor(INK)
        self.drawRightString(right, top, f"Page {number} of {total}")
        line = f"Patient ID: {f.patient_id_markup}&nbsp;&nbsp;&nbsp;&nbsp;Report ID: {escape(f.report_id)}"
        width = right - left
        para = Paragraph(line, styles()["head_left"])
        _, h = para.wrap(width * 0.68, 30)
        para.drawOn(self, left, top - 5 - h)
        gen = Paragraph(f"Generated: {escape(f.generated)}", styles()["head_right"])
        _, gh = gen.wrap(width * 0.32, 30)
        gen.drawOn(self, right - width * 0.32, top - 5 - gh)
        self.setStrokeColor(ACCENT)
        self.setLineWidth(0.8)
        rule_y = top - 8 - max(h, gh)
        self.line(left, rule_y, right, rule_y)

    def _draw_footer(self) -> None:
        """What this document is, and the demo warning on every page it applies to."""
        left, right = MARGIN_X, PAGE_W - MARGIN_X
        self.setStrokeColor(RULE)
        self.setLineWidth(0.4)
        self.line(left, 12 * mm, right, 12 * mm)
        self.setFont(REGULAR, 6.8)
        self.setFillColor(MUTED)
        self.drawString(left, 8.5 * mm, self._furniture.footer)
        if self._furniture.demo:
            self.setFont(BOLD, 6.8)
            self.setFillColor(ALERT)
            self.drawRightString(right, 8.5 * mm, "Demonstration model: not for clinical use")


def box(
    paragraphs: Sequence[Flowable], fg: colors.Color, bg: colors.Color, width: float, line: float = 1.2
) -> Table:
    """Paragraphs in a framed, tinted box."""
    table = Table([[list(paragraphs)]], colWidths=[width], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), line, fg),
                ("BACKGROUND", (0, 0), (-1, -1), bg),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


class Builder:
    """Collects the report's flowables in order, numbering the sections."""

    def __init__(self, width: float) -> None:
        self.width = width
        self.s = styles()
        self.story: list[Flowable] = []
        self._section = 0

    def section(self, title: str) -> list[Flowable]:
        """A numbered section heading with its rule, kept with what follows."""
        self._section += 1
        heading = Paragraph(f"{self._section}.&nbsp;&nbsp;{escape(title)}", self.s["h2"])
        rule = Table([[""]], colWidths=[self.width], rowHeights=[1.5])
        rule.setStyle(
            TableStyle(
                [
                    ("LINEABOVE", (0, 0), (-1, -1), 0.7, ACCENT),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
                ]
            )
        )
        # spaceBefore, unlike a Spacer, is dropped at the top of a page.
        head: list[Flowable] = [heading, Spacer(1, 2), rule, Spacer(1, 4)]
        for item in head:  # a heading never ends a page: it travels with what follows
            item.keepWithNext = True
        return head

    def fields(
        self, pairs: Sequence[tuple[str, str | Flowable]], columns: int = 2, label_w: float = 30 * mm
    ) -> list[Flowable]:
        """Label/value pairs, ``columns`` pairs a row, as a table (none for no pairs)."""
        if not pairs:
            return []
        value_w = self.width / columns - label_w
        rows: list[list[Any]] = []
        for start in range(0, len(pairs), columns):
            row: list[Any] = []
            for label, value in pairs[start : start + columns]:
                cell = value if isinstance(value, Flowable) else Paragraph(value, self.s["value"])
                row += [Paragraph(escape(label), self.s["label"]), cell]
            row += [""] * (2 * columns - len(row))
            rows.append(row)
        # splitInRow: a value longer than a page (pasted text) breaks across pages, not the build.
        table = Table(rows, colWidths=[label_w, value_w] * columns, hAlign="LEFT", splitInRow=1)
        table.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 6),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        return [table]

    def grid(self, header: Sequence[str], rows: Sequence[Sequence[str | Flowable]], widths: Sequence[float]) -> Table:
        """A ruled table with a shaded header row; cells are markup strings or flowables."""
        head_style = ParagraphStyle("grid_head", parent=self.s["label"], fontName=BOLD, textColor=INK)
        data = [[Paragraph(escape(h), head_style) for h in header]]
        data += [[c if isinstance(c, Flowable) else Paragraph(c, self.s["value"]) for c in row] for row in rows]
        table = Table(data, colWidths=list(widths), hAlign="LEFT", repeatRows=1, splitInRow=1)
        table.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.6, RULE),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.3, RULE),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 4),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 4),
                    ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                ]
            )
        )
        return table

    def add(self, *items: Flowable | None) -> None:
        self.story.extend(i for i in items if i is not None)


def demo_box(b: Builder) -> Table:
    """The demonstration-model warning in a red box."""
    warning = Paragraph(f"\u26a0&nbsp;&nbsp;{escape(DEMO_WARNING)}", coloured(b.s["box"], ALERT, "demo"))
    return box([warning], ALERT, ALERT_BG, b.width)
