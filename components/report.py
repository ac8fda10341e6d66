"""The per-patient PDF report: each eye's Grad-CAM evidence and review, next step, model card."""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from reportlab import Version as REPORTLAB_VERSION
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    KeepTogether,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from components.gradcam import METHOD_LABELS, Explanation
from components.overlay import COLORMAPS, blend, colorbar, colorize, resize_map

__all__ = [
    "REPORT_TITLE",
    "EyeFindings",
    "ModelInfo",
    "PatientInfo",
    "ReportError",
    "ReviewInfo",
    "build_report",
    "safe_filename",
]

REPORT_TITLE = "Cataract screening report"
DEMO_WARNING = "Demonstration model trained on synthetic images. Not for clinical use."
REFER = "Refer to an ophthalmologist"
ROUTINE = "No cataract detected by the model; routine follow-up"
FINAL_DECISION = "The final decision rests with the reviewing clinician."
NOT_REVIEWED = "NOT YET REVIEWED"
NOT_SIGNED = "REVIEW NOT YET SIGNED"

EYES = {"OD": "Right eye (OD)", "OS": "Left eye (OS)"}
MODALITIES = {
    "external": "External eye photograph",
    "slit_lamp": "Slit-lamp photograph",
    "fundus": "Fundus photograph",
}
_SEXES = {"f": "Female", "m": "Male"}
_METRIC_NAMES = {
    "auc": "AUC",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "ece": "ECE",
    "mcc": "MCC",
}

# Print resolution of the panels, and a cap so that huge photographs cannot bloat the file.
PANEL_DPI = 200
PANEL_MAX_SIDE = 640

_PAGE_W, _PAGE_H = A4
_MARGIN_X = 15 * mm
_MARGIN_TOP = 24 * mm
_MARGIN_BOTTOM = 17 * mm

_INK = colors.HexColor("#1A1A1A")
_MUTED = colors.HexColor("#555555")
_ACCENT = colors.HexColor("#1F3A5F")
_RULE = colors.HexColor("#B8C2CC")
_SHADE = colors.HexColor("#F1F4F7")
_ALERT = colors.HexColor("#B3261E")
_ALERT_BG = colors.HexColor("#FCEBEA")
_WARN = colors.HexColor("#8A4B00")
_WARN_BG = colors.HexColor("#FFF3DC")
_OK = colors.HexColor("#1E6B35")
_OK_BG = colors.HexColor("#EAF5EC")

_DOT = " &nbsp;&middot;&nbsp; "
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10})?")
_FILENAME_STEM_MAX = 64


_BUILD_LOCK = threading.Lock()


class ReportError(ValueError):
    """The inputs to a report were malformed; the message says which field and what was expected."""


@dataclass(frozen=True)
class PatientInfo:
    """Who the report is about; only the pseudonymous ID is required."""

    pseudo_id: str
    name: str | None = None
    birth_date: date | None = None
    sex: str | None = None


@dataclass(frozen=True)
class ReviewInfo:
    """A clinician's review of one eye's result; ``signed_at`` is None for an unsigned draft."""

    reviewer: str
    agrees: bool | None
    finding: str | None
    grade: str | None
    notes: str = ""
    signed_at: datetime | None = None
    version: int = 1


@dataclass(frozen=True)
class EyeFindings:
    """One eye's examination: the photograph, the model's explanation and the clinician's review."""

    eye: str  # "OD" or "OS"
    image: np.ndarray | None  # original RGB uint8 photograph (full size); None when unreadable
    explanation: Explanation | None
    exam_date: date | None = None
    modality: str | None = None  # "external", "slit_lamp", "fundus"
    gradable: bool = True
    ungradable_reason: str | None = None
    colormap: str = "jet"
    alpha: float = 0.5
    # Filled once the attention check exists: printed as given when present, never invented.
    attention: Mapping[str, Any] | None = None
    faithfulness: Mapping[str, Any] | None = None
    review: ReviewInfo | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about the model that produced the results."""

    name: str
    version: str
    weights_sha256: str
    threshold: float
    is_demo: bool
    card: Mapping[str, Any]

    @classmethod
    def from_classifier(cls, clf: Any) -> ModelInfo:
        """The model's description from a loaded ``models.Classifier`` (or anything like one)."""
        card = dict(getattr(clf, "card", {}) or {})
        version = card.get("version")
        return cls(
            name=str(clf.name),
            version=str(version) if version not in (None, "") else "unversioned",
            weights_sha256=str(clf.weights_sha256 or ""),
            threshold=float(clf.threshold),
            is_demo=bool(clf.is_demo),
            card=card,
        )


# ---------------------------------------------------------------------------------------------
# Fonts and text


@dataclass(frozen=True)
class _Fonts:
    covered: frozenset[int]  # code points both DejaVu Sans faces can draw


_REGULAR, _BOLD, _ITALIC, _BOLD_ITALIC, _MONO = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSansMono",
)
_CJK_FONTS = {"zh": "STSong-Light", "ja": "HeiseiMin-W3", "ko": "HYSMyeongJo-Medium"}


@functools.cache
def _fonts() -> _Fonts:
    import matplotlib  # ships DejaVu, so no font is downloaded or bundled

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    faces = {}
    for name in (_REGULAR, _BOLD, _ITALIC, _BOLD_ITALIC, _MONO):
        path = folder / f"{name}.ttf"
        if not path.is_file():
            raise ReportError(
                f"The font {name}.ttf was not found in matplotlib's data folder; "
                "expected matplotlib's bundled DejaVu fonts."
            )
        faces[name] = TTFont(name, str(path))
        pdfmetrics.registerFont(faces[name])
    pdfmetrics.registerFontFamily(
        _REGULAR, normal=_REGULAR, bold=_BOLD, italic=_ITALIC, boldItalic=_BOLD_ITALIC
    )
    for cid in _CJK_FONTS.values():
        pdfmetrics.registerFont(UnicodeCIDFont(cid))
    covered = set(faces[_REGULAR].face.charToGlyph) & set(faces[_BOLD].face.charToGlyph)
    return _Fonts(covered=frozenset(covered))


def _is_cjk(cp: int) -> bool:
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


def _cjk_font(text: str) -> str:
    """One CID font per string: kana means Japanese, Hangul Korean, otherwise Chinese."""
    if any(0x3040 <= ord(c) <= 0x30FF or 0x31F0 <= ord(c) <= 0x31FF for c in text):
        return _CJK_FONTS["ja"]
    if any(
        0xAC00 <= ord(c) <= 0xD7AF or 0x1100 <= ord(c) <= 0x11FF or 0x3130 <= ord(c) <= 0x318F
        for c in text
    ):
        return _CJK_FONTS["ko"]
    return _CJK_FONTS["zh"]


def _clean(value: Any) -> str:
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROL.sub("", text)


def _markup(value: Any) -> str:
    """User text as Paragraph markup: escaped, CJK set in a CID font, newlines as line breaks."""
    text = _clean(value)
    covered = _fonts().covered
    cid = _cjk_font(text)
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
        cjk = cp not in covered and _is_cjk(cp) and ch != "\n"
        if cjk != run_cjk:
            flush()
            run_cjk = cjk
        run.append(ch)
    flush()
    return "".join(out)


@functools.cache
def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    base = ParagraphStyle("body", fontName=_REGULAR, fontSize=9.2, leading=12.2, textColor=_INK)

    def make(name: str, **kw: Any) -> ParagraphStyle:
        return ParagraphStyle(name, parent=base, **kw)

    return {
        "body": base,
        "small": make("small", fontSize=7.8, leading=10, textColor=_MUTED),
        "label": make("label", fontSize=7.8, leading=10.5, textColor=_MUTED),
        "value": make("value"),
        "mono": make("mono", fontName=_MONO, fontSize=7.8, leading=10.5),
        "h2": make(
            "h2", fontName=_BOLD, fontSize=12, leading=15, textColor=_ACCENT, spaceBefore=10
        ),
        "h3": make(
            "h3",
            fontName=_BOLD,
            fontSize=9.6,
            leading=12.5,
            textColor=_INK,
            spaceBefore=5,
            spaceAfter=2,
            keepWithNext=1,
        ),
        "caption": make("caption", fontSize=7.6, leading=9.8, textColor=_MUTED),
        "box": make("box", fontName=_BOLD, fontSize=10, leading=13),
        "box_big": make("box_big", fontName=_BOLD, fontSize=12.5, leading=16),
        "bullet": make("bullet", leftIndent=11, bulletIndent=2, spaceAfter=2.5),
        "notes": make("notes", leftIndent=6, spaceAfter=2),
        "head_left": make("head_left", fontSize=7.6, leading=9.5, textColor=_MUTED),
        "head_right": make(
            "head_right", fontSize=7.6, leading=9.5, textColor=_MUTED, alignment=TA_RIGHT
        ),
    }


# ---------------------------------------------------------------------------------------------
# Formatting


def _fmt_datetime(value: datetime) -> str:
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


def _fmt_prob(p: float) -> str:
    return f"{p:.3f}"


def _fmt_threshold(t: float) -> str:
    return f"{t:.2f}" if abs(round(t, 2) - t) < 1e-9 else f"{t:.3f}"


def _fmt_number(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):d}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _fmt_value(value: Any) -> str | None:
    """A card or check value as text; None for absent values, which are left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return _fmt_number(float(value))
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, datetime):
        return _fmt_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        parts = [
            f"{_label(k)}: {v}"
            for k, v in ((k, _fmt_value(v)) for k, v in value.items())
            if v is not None
        ]
        return "; ".join(parts) or None
    if isinstance(value, (list, tuple)):
        parts = [p for p in (_fmt_value(v) for v in value) if p is not None]
        return ", ".join(parts) or None
    return str(value)


def _label(key: Any) -> str:
    """A card or check key as a label: ``deletion_auc`` -> ``Deletion AUC``."""
    text = str(key).strip()
    if text.lower() in _METRIC_NAMES:
        return _METRIC_NAMES[text.lower()]
    words = [_METRIC_NAMES.get(w.lower(), w) for w in text.replace("_", " ").split(" ")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _age(birth: date, on: date) -> int | None:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return years if years >= 0 else None


def _package_version() -> str:
    try:
        return importlib_metadata.version("cataract-cam")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _pdf_date(value: datetime) -> str:
    utc = value.astimezone(UTC)
    return f"D:{utc:%Y%m%d%H%M%S}+00'00'"


# ---------------------------------------------------------------------------------------------
# Per-eye results


@dataclass(frozen=True)
class _Result:
    eye: EyeFindings
    p: float | None  # probability of the positive class; None without a model result
    threshold: float
    band: float
    positive_class: str

    @property
    def positive(self) -> bool:
        return self.p is not None and self.p >= self.threshold

    @property
    def indeterminate(self) -> bool:
        return self.p is not None and abs(self.p - self.threshold) < self.band

    @property
    def refer(self) -> bool:
        return self.positive or not self.eye.gradable or self.p is None

    def finding(self) -> str:
        if not self.eye.gradable:
            return "Ungradable image"
        if self.p is None:
            return "No model result"
        text = "Cataract suspected" if self.positive else "No cataract detected"
        return text + (" (indeterminate)" if self.indeterminate else "")

    def reason(self) -> str | None:
        name = EYES[self.eye.eye]
        if not self.eye.gradable:
            return f"{name}: image ungradable"
        if self.p is None:
            return f"{name}: no model result"
        if self.positive:
            return (
                f"{name}: probability of {self.positive_class.lower()} {_fmt_prob(self.p)} "
                "at or above the threshold "
                f"{_fmt_threshold(self.threshold)}"
            )
        return None


def _positive_probability(expl: Explanation, positive_class: str) -> float:
    for name, value in expl.probabilities.items():
        if str(name).lower() == positive_class.lower():
            return float(value)
    raise ReportError(
        f"The explanation has no probability for the class {positive_class!r}; "
        f"expected one of {', '.join(map(repr, expl.probabilities))}."
    )


def _check_eye(eye: EyeFindings) -> EyeFindings:
    if not isinstance(eye, EyeFindings):
        raise ReportError(f"Each eye must be an EyeFindings, got {type(eye).__name__}.")
    if eye.eye not in EYES:
        raise ReportError(f"Unknown eye {eye.eye!r}; expected 'OD' (right) or 'OS' (left).")
    if eye.image is not None:
        img = eye.image
        if (
            not isinstance(img, np.ndarray)
            or img.dtype != np.uint8
            or img.ndim != 3
            or img.shape[2] != 3
        ):
            got = (
                f"{img.dtype} array of shape {img.shape}"
                if isinstance(img, np.ndarray)
                else type(img).__name__
            )
            raise ReportError(
                f"The {eye.eye} image must be an RGB uint8 array of shape (H, W, 3), got {got}."
            )
    if eye.colormap not in COLORMAPS:
        raise ReportError(
            f"Unknown colormap {eye.colormap!r}; expected one of {', '.join(COLORMAPS)}."
        )
    if not 0.0 <= float(eye.alpha) <= 1.0:
        raise ReportError(f"The overlay transparency alpha must lie in [0, 1], got {eye.alpha}.")
    return eye


# ---------------------------------------------------------------------------------------------
# The three panels


def _fit(width: float, height: float, box_w: float, box_h: float) -> tuple[float, float]:
    scale = min(box_w / width, box_h / height)
    return width * scale, height * scale


def _print_pixels(draw_w: float, draw_h: float, src_w: int, src_h: int) -> tuple[int, int]:
    """Pixels for a picture printed at draw_w x draw_h points: PANEL_DPI, capped, never upscaled."""
    scale = PANEL_DPI / 72.0
    w, h = draw_w * scale, draw_h * scale
    cap = PANEL_MAX_SIDE / max(w, h)
    if cap < 1.0:
        w, h = w * cap, h * cap
    if w > src_w or h > src_h:
        return src_w, src_h
    return max(1, round(w)), max(1, round(h))


class _Panels(Flowable):
    """Original | heatmap with its colour bar | overlay, side by side across the frame."""

    _TITLE_H = 13.0
    _GAP = 9.0
    _BAR_GAP, _BAR_W, _TICKS_W = 3.0, 6.5, 15.0

    def __init__(
        self, image: np.ndarray | None, explanation: Explanation | None, colormap: str, alpha: float
    ) -> None:
        super().__init__()
        self._image = image
        self._expl = explanation
        self._colormap = colormap
        self._alpha = float(alpha)
        self._layout_width: float | None = None
        self._pictures: list[Image.Image | None] = []

    def _layout(self, avail: float) -> None:
        if self._layout_width == avail:
            return
        extra = self._BAR_GAP + self._BAR_W + self._TICKS_W
        self.panel_w = (avail - 2 * self._GAP - extra) / 3
        src_h, src_w = self._image.shape[:2] if self._image is not None else (3, 4)
        # Without a photograph the placeholders only need to say so, not fill a panel's height.
        aspect = min(max(src_h / src_w, 0.5), 1.0) if self._image is not None else 0.3
        self.box_h = self.panel_w * aspect
        self.draw_w, self.draw_h = _fit(src_w, src_h, self.panel_w, self.box_h)
        self.xs = [0.0, self.panel_w + self._GAP, 2 * (self.panel_w + self._GAP) + extra]
        self.width, self.height = avail, self._TITLE_H + self.box_h
        self._pictures = self._render()
        self._layout_width = avail

    def _render(self) -> list[Image.Image | None]:
        if self._image is None:
            return [None, None, None]
        src_h, src_w = self._image.shape[:2]
        pw, ph = _print_pixels(self.draw_w, self.draw_h, src_w, src_h)
        original = Image.fromarray(self._image)
        if (pw, ph) != (src_w, src_h):
            original = original.resize((pw, ph), Image.Resampling.LANCZOS, reducing_gap=3.0)
        if self._expl is None:
            return [original, None, None]
        small = np.asarray(original)
        heat = colorize(resize_map(self._expl.cam, (pw, ph)), self._colormap)
        over = blend(small, self._expl.cam, alpha=self._alpha, colormap=self._colormap)
        return [original, Image.fromarray(heat), Image.fromarray(over)]

    def wrap(
        self, availWidth: float, availHeight: float
    ) -> tuple[float, float]:  # reportlab's names
        self._layout(availWidth)
        return self.width, self.height

    def draw(self) -> None:
        c = self.canv
        method = (
            METHOD_LABELS.get(self._expl.method, self._expl.method) if self._expl else "Grad-CAM"
        )
        titles = ("Original", f"{method} Heatmap", "Overlay")
        img_y = (self.box_h - self.draw_h) / 2
        for x, title, picture in zip(self.xs, titles, self._pictures, strict=True):
            c.setFont(_BOLD, 8.6)
            c.setFillColor(_INK)
            c.drawCentredString(x + self.panel_w / 2, self.box_h + 4, title)
            img_x = x + (self.panel_w - self.draw_w) / 2
            if picture is None:
                c.setFillColor(_SHADE)
                c.setStrokeColor(_RULE)
                c.rect(img_x, img_y, self.draw_w, self.draw_h, stroke=1, fill=1)
                c.setFillColor(_MUTED)
                c.setFont(_REGULAR, 7.5)
                message = "Image could not be read" if self._image is None else "No model analysis"
                c.drawCentredString(img_x + self.draw_w / 2, img_y + self.draw_h / 2 - 3, message)
                continue
            c.drawImage(ImageReader(picture), img_x, img_y, self.draw_w, self.draw_h)
            c.setStrokeColor(_RULE)
            c.setLineWidth(0.4)
            c.rect(img_x, img_y, self.draw_w, self.draw_h, stroke=1, fill=0)
        if self._pictures[1] is not None:
            self._draw_colour_bar(
                self.xs[1] + (self.panel_w + self.draw_w) / 2 + self._BAR_GAP, img_y
            )

    def _draw_colour_bar(self, x: float, y: float) -> None:
        c = self.canv
        bar = Image.fromarray(colorbar(256, 4, self._colormap))
        c.drawImage(ImageReader(bar), x, y, self._BAR_W, self.draw_h)
        c.setStrokeColor(_MUTED)
        c.setLineWidth(0.4)
        c.rect(x, y, self._BAR_W, self.draw_h, stroke=1, fill=0)
        c.setFillColor(_MUTED)
        c.setFont(_REGULAR, 6.2)
        for frac, text in ((1.0, "1.0"), (0.5, "0.5"), (0.0, "0.0")):
            ty = y + frac * self.draw_h
            c.line(x + self._BAR_W, ty, x + self._BAR_W + 2, ty)
            c.drawString(x + self._BAR_W + 3, min(max(ty - 2.2, y), y + self.draw_h - 5), text)


# ---------------------------------------------------------------------------------------------
# Page furniture: header on every page with "Page X of Y", footer


@dataclass(frozen=True)
class _Furniture:
    report_id: str
    generated: str
    patient_id_markup: str
    demo: bool
    footer: str


class _ReportCanvas(Canvas):
    """Holds each finished page until the end, so every header can say how many pages there are."""

    def __init__(self, *args: Any, furniture: _Furniture, pdf_date: str, **kwargs: Any) -> None:
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
            self._draw_furniture(number, total)
            super().showPage()
        super().save()

    def _draw_furniture(self, number: int, total: int) -> None:
        f = self._furniture
        styles = _styles()
        left, right = _MARGIN_X, _PAGE_W - _MARGIN_X
        top = _PAGE_H - 11 * mm
        self.saveState()
        self.setFillColor(_ACCENT)
        self.setFont(_BOLD, 11.5)
        self.drawString(left, top, REPORT_TITLE)
        self.setFont(_BOLD, 9)
        self.setFillColor(_INK)
        self.drawRightString(right, top, f"Page {number} of {total}")
        line = (
            f"Patient ID: {f.patient_id_markup}&nbsp;&nbsp;&nbsp;&nbsp;"
            f"Report ID: {escape(f.report_id)}"
        )
        width = right - left
        para = Paragraph(line, styles["head_left"])
        _, h = para.wrap(width * 0.68, 30)
        para.drawOn(self, left, top - 5 - h)
        gen = Paragraph(f"Generated: {escape(f.generated)}", styles["head_right"])
        _, gh = gen.wrap(width * 0.32, 30)
        gen.drawOn(self, right - width * 0.32, top - 5 - gh)
        self.setStrokeColor(_ACCENT)
        self.setLineWidth(0.8)
        rule_y = top - 8 - max(h, gh)
        self.line(left, rule_y, right, rule_y)
        # Footer: what this document is, and the demo warning on every page it applies to.
        self.setStrokeColor(_RULE)
        self.setLineWidth(0.4)
        self.line(left, 12 * mm, right, 12 * mm)
        self.setFont(_REGULAR, 6.8)
        self.setFillColor(_MUTED)
        self.drawString(left, 8.5 * mm, f.footer)
        if f.demo:
            self.setFont(_BOLD, 6.8)
            self.setFillColor(_ALERT)
            self.drawRightString(right, 8.5 * mm, "Demonstration model: not for clinical use")
        self.restoreState()


# ---------------------------------------------------------------------------------------------
# Building blocks


def _box(
    paragraphs: Sequence[Flowable],
    fg: colors.Color,
    bg: colors.Color,
    width: float,
    line: float = 1.2,
) -> Table:
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


def _coloured(style: ParagraphStyle, colour: colors.Color, name: str) -> ParagraphStyle:
    return ParagraphStyle(name, parent=style, textColor=colour)


class _Builder:
    """Collects the report's flowables in the order the issue lays down."""

    def __init__(self, width: float) -> None:
        self.width = width
        self.s = _styles()
        self.story: list[Flowable] = []
        self._section = 0

    def section(self, title: str) -> list[Flowable]:
        self._section += 1
        heading = Paragraph(f"{self._section}.&nbsp;&nbsp;{escape(title)}", self.s["h2"])
        rule = Table([[""]], colWidths=[self.width], rowHeights=[1.5])
        rule.setStyle(
            TableStyle(
                [
                    ("LINEABOVE", (0, 0), (-1, -1), 0.7, _ACCENT),
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
        self,
        pairs: Sequence[tuple[str, str | Flowable]],
        columns: int = 2,
        label_w: float = 30 * mm,
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

    def grid(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str | Flowable]],
        widths: Sequence[float],
    ) -> Table:
        """A ruled table with a shaded header row; cells are markup strings or flowables."""
        head_style = ParagraphStyle(
            "grid_head", parent=self.s["label"], fontName=_BOLD, textColor=_INK
        )
        data = [[Paragraph(escape(h), head_style) for h in header]]
        data += [
            [c if isinstance(c, Flowable) else Paragraph(c, self.s["value"]) for c in row]
            for row in rows
        ]
        table = Table(data, colWidths=list(widths), hAlign="LEFT", repeatRows=1, splitInRow=1)
        table.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), _SHADE),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.6, _RULE),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.3, _RULE),
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


def _demo_box(b: _Builder) -> Table:
    return _box(
        [
            Paragraph(
                f"\u26a0&nbsp;&nbsp;{escape(DEMO_WARNING)}", _coloured(b.s["box"], _ALERT, "demo")
            )
        ],
        _ALERT,
        _ALERT_BG,
        b.width,
    )


def _patient_section(
    b: _Builder, patient: PatientInfo, reviewer: str | None, generated: datetime
) -> None:
    b.add(*b.section("Patient"))
    pairs: list[tuple[str, str | Flowable]] = [("Patient ID", _markup(patient.pseudo_id))]
    if patient.name and patient.name.strip():
        pairs.append(("Name", _markup(patient.name)))
    if patient.birth_date is not None:
        age = _age(patient.birth_date, generated.date())
        text = patient.birth_date.isoformat() + (f" (age {age})" if age is not None else "")
        pairs.append(("Birth date", text))
    if patient.sex and patient.sex.strip():
        pairs.append(("Sex", _markup(_SEXES.get(patient.sex.strip().lower(), patient.sex.strip()))))
    if reviewer and reviewer.strip():
        pairs.append(("Reviewing clinician", _markup(reviewer)))
    b.add(*b.fields(pairs, columns=1, label_w=36 * mm))


def _mapping_block(b: _Builder, title: str, data: Mapping[str, Any]) -> list[Flowable]:
    """An attention or faithfulness record, printed as given: verdict first, then its figures."""
    items = [(k, v) for k, v in data.items()]
    verdict = next((_fmt_value(v) for k, v in items if str(k).lower() == "verdict"), None)
    pairs = [
        (_label(k), _markup(text))
        for k, v in items
        if str(k).lower() != "verdict" and (text := _fmt_value(v)) is not None
    ]
    out: list[Flowable] = [Paragraph(escape(title), b.s["h3"])]
    if verdict is not None:
        out.append(Paragraph(f"<b>Verdict:</b> {_markup(verdict)}", b.s["body"]))
    return out + b.fields(pairs, columns=2, label_w=34 * mm)


def _review_block(b: _Builder, review: ReviewInfo | None) -> list[Flowable]:
    out: list[Flowable] = [Paragraph("Clinician review", b.s["h3"])]
    if review is None:
        out.append(
            _box(
                [
                    Paragraph(NOT_REVIEWED, _coloured(b.s["box_big"], _ALERT, "nyr")),
                    Paragraph(
                        "No clinician has reviewed this eye's result yet.",
                        _coloured(b.s["small"], _ALERT, "nyr_small"),
                    ),
                ],
                _ALERT,
                _ALERT_BG,
                b.width * 0.62,
                line=1.6,
            )
        )
        return out
    if review.signed_at is None:
        out.append(
            _box(
                [Paragraph(NOT_SIGNED, _coloured(b.s["box"], _WARN, "uns"))],
                _WARN,
                _WARN_BG,
                b.width * 0.62,
            )
        )
        out.append(Spacer(1, 3))
    pairs: list[tuple[str, str | Flowable]] = []
    if review.agrees is not None:
        pairs.append(
            ("Agreement", "Agrees with the model" if review.agrees else "Disagrees with the model")
        )
    if review.finding and review.finding.strip():
        pairs.append(("Finding", _markup(review.finding)))
    if review.grade and review.grade.strip():
        pairs.append(("Grade", _markup(review.grade)))
    if review.signed_at is not None:
        signed = f"{_markup(review.reviewer)}, {escape(_fmt_datetime(review.signed_at))}"
        pairs.append(("Signed by", signed))
    else:
        pairs.append(("Drafted by", _markup(review.reviewer) + " (not signed)"))
    pairs.append(("Review version", str(int(review.version))))
    out += b.fields(pairs, columns=1, label_w=30 * mm)
    notes = _clean(review.notes).strip()
    if notes:
        out.append(Paragraph("Notes", b.s["label"]))
        # One paragraph per line of notes, so long notes can break between pages anywhere.
        for line in notes.split("\n"):
            out.append(Paragraph(_markup(line) if line.strip() else "&nbsp;", b.s["notes"]))
    return out


def _eye_section(b: _Builder, result: _Result, positive_class: str) -> None:
    eye = result.eye
    expl = eye.explanation
    head = b.section(EYES[eye.eye])
    pairs: list[tuple[str, str | Flowable]] = []
    if eye.exam_date is not None:
        pairs.append(("Exam date", eye.exam_date.isoformat()))
    if eye.modality and eye.modality.strip():
        pairs.append(
            ("Modality", _markup(MODALITIES.get(eye.modality.strip().lower(), eye.modality)))
        )
    if eye.gradable:
        quality = "Gradable"
    else:
        reason = (eye.ungradable_reason or "").strip()
        quality = "<b>Ungradable</b>" + (f": {_markup(reason)}" if reason else "")
    pairs.append(("Image quality", quality))
    block: list[Flowable] = [*head]
    block += b.fields(pairs, columns=2, label_w=24 * mm)
    block.append(Paragraph("Model result", b.s["h3"]))
    if expl is None or result.p is None:
        block.append(Paragraph("No model result for this eye.", b.s["body"]))
    else:
        p, thr, band = result.p, result.threshold, result.band
        verdict = (
            "At or above threshold: cataract suspected"
            if result.positive
            else "Below threshold: no cataract detected"
        )
        colour = "#B3261E" if result.positive else "#1E6B35"
        line = f'Result: <font color="{colour}"><b>{verdict}</b></font>'
        if result.indeterminate:
            line += (
                '&nbsp;&nbsp;<font color="#8A4B00"><b>INDETERMINATE</b></font> '
                "(within the band around the threshold)"
            )
        block.append(Paragraph(line, b.s["body"]))
        block.append(Spacer(1, 2))
        low, high = _fmt_threshold(max(thr - band, 0.0)), _fmt_threshold(min(thr + band, 1.0))
        result_pairs: list[tuple[str, str | Flowable]] = [
            (f"Probability of {positive_class.lower()}", f"<b>{_fmt_prob(p)}</b> ({p * 100:.1f}%)"),
            (
                "Predicted class",
                f"{_markup(expl.prediction)} (probability {_fmt_prob(expl.confidence)})",
            ),
            ("Operating threshold", _fmt_threshold(thr)),
            ("Indeterminate band", f"threshold \u00b1 {_fmt_threshold(band)} ({low} to {high})"),
        ]
        block += b.fields(result_pairs, columns=2, label_w=35 * mm)
        if not eye.gradable:
            block.append(
                Paragraph(
                    "The image is ungradable, so the model's output for it is not reliable.",
                    _coloured(b.s["small"], _ALERT, "ungr"),
                )
            )
    block.append(Spacer(1, 6))
    block.append(_Panels(eye.image, expl, eye.colormap, eye.alpha))
    block.append(Spacer(1, 4))
    if expl is not None:
        method = METHOD_LABELS.get(expl.method, expl.method)
        caption = (
            f"<b>Method:</b> {escape(method)}{_DOT}<b>Layer:</b> {_markup(expl.layer)}"
            f"{_DOT}<b>Target class:</b> {_markup(expl.target)}{_DOT}"
            f"<b>Colormap:</b> {escape(eye.colormap)}{_DOT}"
            f"<b>Transparency \u03b1:</b> {eye.alpha:.2f}"
        )
        block.append(Paragraph(caption, b.s["caption"]))
        note = (
            "Colour bar: map value normalised per image, 0 (low) to 1 (high); \u03b1 is the "
            "heatmap's weight in the overlay. The heatmap shows where the model looked; it is not "
            "an outline of a lesion."
        )
        if expl.is_zero:
            note += " The map is flat: no region drove this class at this layer."
        block.append(Paragraph(note, b.s["caption"]))
    # Heading, result and panels stay on one page; the checks and the review may flow on.
    b.add(KeepTogether(block))
    if eye.attention:
        b.add(*_mapping_block(b, "Attention check", eye.attention))
    if eye.faithfulness:
        b.add(*_mapping_block(b, "Faithfulness", eye.faithfulness))
    b.add(*_review_block(b, eye.review))


def _review_summary(review: ReviewInfo | None) -> str:
    if review is None:
        return f'<font color="#B3261E"><b>{NOT_REVIEWED}</b></font>'
    parts = []
    if review.agrees is not None:
        parts.append("Agrees" if review.agrees else "Disagrees")
    if review.finding and review.finding.strip():
        parts.append(_markup(review.finding))
    parts.append("signed" if review.signed_at is not None else "not signed")
    return "; ".join(parts)


def _summary_section(b: _Builder, results: Sequence[_Result], positive_class: str) -> None:
    b.add(*b.section("Summary and recommendation"))
    rows = []
    for r in results:
        quality = "Gradable" if r.eye.gradable else "Ungradable"
        p = _fmt_prob(r.p) if r.p is not None else "\u2013"
        rows.append(
            [EYES[r.eye.eye], quality, p, escape(r.finding()), _review_summary(r.eye.review)]
        )
    w = b.width
    b.add(
        b.grid(
            [
                "Eye",
                "Image quality",
                f"P({positive_class.lower()})",
                "Model finding",
                "Clinician review",
            ],
            rows,
            [0.17 * w, 0.14 * w, 0.12 * w, 0.27 * w, 0.30 * w],
        )
    )
    b.add(Spacer(1, 7))
    refer = any(r.refer for r in results)
    reasons = [reason for r in results if (reason := r.reason())]
    fg, bg = (_ALERT, _ALERT_BG) if refer else (_OK, _OK_BG)
    content: list[Flowable] = [
        Paragraph("Suggested next step", _coloured(b.s["label"], fg, "next_label")),
        Paragraph(escape(REFER if refer else ROUTINE), _coloured(b.s["box_big"], fg, "next")),
    ]
    if reasons:
        content.append(Paragraph("Because: " + escape("; ".join(reasons)) + ".", b.s["body"]))
    if any(r.indeterminate for r in results):
        content.append(
            Paragraph(
                "At least one result is indeterminate (probability within "
                f"\u00b1{_fmt_threshold(results[0].band)} "
                "of the threshold) and deserves particular attention.",
                b.s["body"],
            )
        )
    content.append(Paragraph(f"<b>{escape(FINAL_DECISION)}</b>", b.s["body"]))
    b.add(_box(content, fg, bg, b.width))


def _model_section(b: _Builder, model: ModelInfo) -> None:
    head = b.section("Model")
    card = model.card or {}
    if model.is_demo:
        head += [_demo_box(b), Spacer(1, 5)]
    pairs: list[tuple[str, str | Flowable]] = [
        ("Name", _markup(model.name)),
        ("Version", _markup(model.version or "unversioned")),
    ]
    if model.weights_sha256:
        pairs.append(("Weights SHA-256", Paragraph(escape(model.weights_sha256), b.s["mono"])))
    for key, label in (("architecture", "Architecture"), ("input_size", "Input size")):
        text = _fmt_value(card.get(key))
        if text is not None:
            pairs.append(
                (label, _markup(text + (" px" if key == "input_size" and text.isdigit() else "")))
            )
    pairs.append(("Operating threshold", _fmt_threshold(model.threshold)))
    training = card.get("training_data")
    if isinstance(training, Mapping):
        lines = [
            f"{escape(_label(k))}: {_markup(v)}"
            for k, v in ((k, _fmt_value(v)) for k, v in training.items())
            if v is not None
        ]
        if lines:
            pairs.append(("Training data", "<br/>".join(lines)))
    elif (text := _fmt_value(training)) is not None:
        pairs.append(("Training data", _markup(text)))
    if (text := _fmt_value(card.get("intended_use"))) is not None:
        pairs.append(("Intended use", _markup(text)))
    b.add(KeepTogether([*head, *b.fields(pairs, columns=1, label_w=36 * mm)]))
    metrics = card.get("metrics")
    rows = []
    if isinstance(metrics, Mapping):
        for name, entry in metrics.items():
            value, ci = (
                (entry.get("value"), entry.get("ci95"))
                if isinstance(entry, Mapping)
                else (entry, None)
            )
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            ci_text = "\u2013"
            if (
                isinstance(ci, (list, tuple))
                and len(ci) == 2
                and all(isinstance(v, (int, float)) for v in ci)
            ):
                ci_text = f"{_fmt_number(float(ci[0]))} to {_fmt_number(float(ci[1]))}"
            rows.append([_markup(_label(name)), _fmt_number(float(value)), ci_text])
    if rows:
        b.add(Spacer(1, 5), Paragraph("Performance (from the model card)", b.s["h3"]))
        b.add(
            b.grid(
                ["Metric", "Value", "95% confidence interval"],
                rows,
                [0.34 * b.width, 0.2 * b.width, 0.3 * b.width],
            )
        )


def _limitations_section(b: _Builder, model: ModelInfo) -> None:
    b.add(*b.section("Limitations and disclaimer"))
    bullets = [
        "<b>Decision support, not a diagnosis.</b> The model's output and this report support "
        "a qualified clinician; they do not diagnose cataract or any other condition, and they "
        "do not replace an eye examination.",
        "<b>A heatmap is not a lesion outline.</b> Grad-CAM shows which parts of the photograph "
        "most influenced the model's output. It does not delineate a lens opacity, measure its "
        "extent or grade its severity, and a plausible-looking heatmap does not prove the "
        "result is right.",
        "<b>Regulatory status.</b> cataract-cam is research software. It is not a cleared or "
        "approved medical device (it has no FDA clearance and no CE marking) and must not be "
        "the sole basis of a clinical decision.",
        "<b>Scope of the model.</b> Results hold at best for photographs like those the model was "
        "trained and evaluated on (see Model); other cameras, image types, populations and image "
        "quality can lower its accuracy. Results near the threshold are the least certain.",
    ]
    if model.is_demo:
        bullets.append(f"<b>{escape(DEMO_WARNING)}</b> Its results demonstrate the software only.")
    for text in bullets:
        b.add(Paragraph(text, b.s["bullet"], bulletText="\u2022"))


# ---------------------------------------------------------------------------------------------
# Public entry points


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID:
    if value is None:
        return uuid.uuid4()
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ReportError(
            "The report ID must be a UUID such as 123e4567-e89b-12d3-a456-426614174000."
        ) from None


def build_report(
    patient: PatientInfo,
    eyes: Sequence[EyeFindings],
    model: ModelInfo,
    *,
    reviewer: str | None = None,
    report_id: uuid.UUID | str | None = None,
    generated_at: datetime | None = None,
    indeterminate_band: float = 0.1,
    positive_class: str = "Cataract",
) -> bytes:
    """The patient's report as PDF bytes (A4), built in memory.

    Eyes are printed right (OD) before left (OS). With ``report_id`` and ``generated_at`` fixed,
    two builds give identical bytes. A naive ``generated_at`` is taken as local time.
    """
    if not isinstance(patient, PatientInfo):
        raise ReportError(f"patient must be a PatientInfo, got {type(patient).__name__}.")
    if not isinstance(patient.pseudo_id, str) or not patient.pseudo_id.strip():
        raise ReportError("The patient needs a non-empty pseudonymous ID.")
    if not isinstance(model, ModelInfo):
        raise ReportError(f"model must be a ModelInfo, got {type(model).__name__}.")
    if not 0.0 < float(model.threshold) < 1.0:
        raise ReportError(
            f"The model's threshold must lie strictly between 0 and 1, got {model.threshold}."
        )
    if not 0.0 <= float(indeterminate_band) < 0.5:
        raise ReportError(f"indeterminate_band must lie in [0, 0.5), got {indeterminate_band}.")
    eyes = [_check_eye(e) for e in eyes]
    if not eyes:
        raise ReportError("A report needs at least one eye examination; got none.")
    order = {"OD": 0, "OS": 1}
    eyes.sort(key=lambda e: (order[e.eye], e.exam_date or date.min))
    rid = _as_uuid(report_id)
    if generated_at is None:
        generated = datetime.now().astimezone()
    elif generated_at.tzinfo is None or generated_at.utcoffset() is None:
        generated = generated_at.astimezone()  # a naive time is the machine's local time
    else:
        generated = generated_at
    threshold = float(model.threshold)
    band = float(indeterminate_band)
    results = [
        _Result(
            e,
            _positive_probability(e.explanation, positive_class)
            if e.explanation is not None
            else None,
            threshold,
            band,
            positive_class,
        )
        for e in eyes
    ]

    _fonts()
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=_MARGIN_X,
        rightMargin=_MARGIN_X,
        topMargin=_MARGIN_TOP,
        bottomMargin=_MARGIN_BOTTOM,
        invariant=True,
        title=REPORT_TITLE,
        subject="Cataract screening with Grad-CAM evidence: decision support, not a diagnosis",
        author="cataract-cam",
        creator="cataract-cam",
        producer=f"cataract-cam {_package_version()} (ReportLab {REPORTLAB_VERSION})",
        keywords=[f"cataract-cam {_package_version()}", "cataract screening", "Grad-CAM"],
        lang="en",
        initialFontName=_REGULAR,
    )
    # No frame padding, so that text, boxes and panels line up with the header's rule.
    frame = Frame(
        doc.leftMargin,
        doc.bottomMargin,
        doc.width,
        doc.height,
        id="body",
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame])])
    b = _Builder(doc.width)
    # The running header carries the title; page 1 opens with the demo warning when it applies.
    if model.is_demo:
        b.add(_demo_box(b))
    _patient_section(b, patient, reviewer, generated)
    for r in results:
        _eye_section(b, r, positive_class)
    _summary_section(b, results, positive_class)
    _model_section(b, model)
    _limitations_section(b, model)

    furniture = _Furniture(
        report_id=str(rid),
        generated=_fmt_datetime(generated),
        patient_id_markup=_markup(
            patient.pseudo_id[:40] + ("\u2026" if len(patient.pseudo_id) > 40 else "")
        ),
        demo=model.is_demo,
        footer=f"cataract-cam {_package_version()} \u00b7 Decision support, not a diagnosis \u00b7 "
        f"Model {model.name[:40]} {model.version[:20]}",
    )
    maker: Callable[..., Canvas] = functools.partial(
        _ReportCanvas, furniture=furniture, pdf_date=_pdf_date(generated)
    )
    # reportlab wraps every stream in ASCII85 by default, a process-wide setting only: 25% larger
    # and, in pure Python, most of the build time. Builds are serialised while it is switched off.
    with _BUILD_LOCK:
        saved = rl_config.useA85
        rl_config.useA85 = 0
        try:
            doc.build(b.story, canvasmaker=maker)
        finally:
            rl_config.useA85 = saved
    return buffer.getvalue()


def safe_filename(pseudo_id: str, suffix: str = ".pdf") -> str:
    """A report file name safe on every file system: ``cataract_report_<id>.pdf``.

    Only ``[A-Za-z0-9_-]`` survive from the ID; when anything had to change, a short hash of the
    ID is appended so that different IDs keep different names, and an ID with nothing safe left
    becomes its hash.
    """
    if not isinstance(pseudo_id, str):
        raise TypeError(f"pseudo_id must be a str, got {type(pseudo_id).__name__}.")
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise ValueError(
            "suffix must be empty or a dot followed by 1 to 10 letters or digits, such as '.pdf'."
        )
    ascii_id = unicodedata.normalize("NFKD", pseudo_id).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE_NAME.sub("_", ascii_id).strip("_-")
    digest = hashlib.sha256(pseudo_id.encode("utf-8")).hexdigest()
    if not stem:
        stem = digest[:16]
    elif stem != pseudo_id or len(stem) > _FILENAME_STEM_MAX:
        stem = f"{stem[: _FILENAME_STEM_MAX - 9].rstrip('_-')}-{digest[:8]}"
    return f"cataract_report_{stem}{suffix}"
