"""Building a report: checking the inputs, laying out the story, rendering it to PDF bytes; file names."""

from __future__ import annotations

import functools
import hashlib
import io
import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime

from reportlab import Version as REPORTLAB_VERSION
from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Flowable, Frame, PageTemplate

from components.report.content import REPORT_TITLE, EyeFindings, ModelInfo, PatientInfo, ReportError, checked_eye
from components.report.eye import eye_section
from components.report.fonts import REGULAR, fonts
from components.report.layout import Builder, Furniture, ReportCanvas, demo_box
from components.report.results import decide_eyes
from components.report.sections import limitations_section, model_section, patient_section, summary_section
from components.report.style import MARGIN_BOTTOM, MARGIN_TOP, MARGIN_X
from components.report.text import fmt_datetime, markup, package_version, pdf_date

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10})?")
_FILENAME_STEM_MAX = 64
_EYE_ORDER = {"OD": 0, "OS": 1}

# reportlab wraps every stream in ASCII85 by default, a process-wide setting only: 25% larger and, in
# pure Python, most of the build time. It is switched off once for the whole process, which lets
# sessions build their reports at the same time with no lock for one long report to hold the others up.
rl_config.useA85 = 0


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

    Eyes are printed right (OD) before left (OS). Each eye's finding and the next step are
    :func:`components.screening.decision.decide`'s, at the model's threshold. With ``report_id`` and
    ``generated_at`` fixed, two builds give identical bytes. A naive ``generated_at`` is taken as
    local time.

    Raises:
        ReportError: a malformed patient, model, eye, band or report ID; the message names the
            field and never quotes patient data.
    """
    ordered = _checked(patient, eyes, model, indeterminate_band)
    rid = _as_uuid(report_id)
    generated = _local_time(generated_at)
    results = decide_eyes(ordered, float(model.threshold), float(indeterminate_band), positive_class)

    fonts()
    buffer = io.BytesIO()
    doc = _document(buffer)
    b = Builder(doc.width)
    # The running header carries the title; page 1 opens with the demo warning when it applies.
    if model.is_demo:
        b.add(demo_box(b))
    patient_section(b, patient, reviewer, generated)
    for r in results:
        eye_section(b, r, positive_class)
    summary_section(b, results, positive_class)
    model_section(b, model)
    limitations_section(b, model)
    maker: Callable[..., Canvas] = functools.partial(
        ReportCanvas, furniture=_furniture(patient, model, rid, generated), pdf_date=pdf_date(generated)
    )
    _render(doc, b.story, maker)
    return buffer.getvalue()


def _checked(
    patient: PatientInfo, eyes: Sequence[EyeFindings], model: ModelInfo, band: float
) -> list[EyeFindings]:
    """The eyes in print order (right first, then by exam date), once every input is usable."""
    if not isinstance(patient, PatientInfo):
        raise ReportError(f"patient must be a PatientInfo, got {type(patient).__name__}.")
    if not isinstance(patient.pseudo_id, str) or not patient.pseudo_id.strip():
        raise ReportError("The patient needs a non-empty pseudonymous ID.")
    if not isinstance(model, ModelInfo):
        raise ReportError(f"model must be a ModelInfo, got {type(model).__name__}.")
    if not 0.0 < float(model.threshold) < 1.0:
        raise ReportError(f"The model's threshold must lie strictly between 0 and 1, got {model.threshold}.")
    if not 0.0 <= float(band) < 0.5:
        raise ReportError(f"indeterminate_band must lie in [0, 0.5), got {band}.")
    checked = [checked_eye(e) for e in eyes]
    if not checked:
        raise ReportError("A report needs at least one eye examination; got none.")
    return sorted(checked, key=lambda e: (_EYE_ORDER[e.eye], e.exam_date or date.min))


def _local_time(generated_at: datetime | None) -> datetime:
    if generated_at is None:
        return datetime.now().astimezone()
    if generated_at.tzinfo is None or generated_at.utcoffset() is None:
        return generated_at.astimezone()  # a naive time is the machine's local time
    return generated_at


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID:
    if value is None:
        return uuid.uuid4()
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ReportError("The report ID must be a UUID such as 123e4567-e89b-12d3-a456-426614174000.") from None


def _document(buffer: io.BytesIO) -> BaseDocTemplate:
    version = package_version()
    doc = BaseDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN_X,
        rightMargin=MARGIN_X,
        topMargin=MARGIN_TOP,
        bottomMargin=MARGIN_BOTTOM,
        invariant=True,
        title=REPORT_TITLE,
        subject="Cataract screening with Grad-CAM evidence: decision support, not a diagnosis",
        author="cataract-cam",
        creator="cataract-cam",
        producer=f"cataract-cam {version} (ReportLab {REPORTLAB_VERSION})",
        keywords=[f"cataract-cam {version}", "cataract screening", "Grad-CAM"],
        lang="en",
        initialFontName=REGULAR,
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
    return doc


def _furniture(patient: PatientInfo, model: ModelInfo, rid: uuid.UUID, generated: datetime) -> Furniture:
    pid = patient.pseudo_id
    return Furniture(
        report_id=str(rid),
        generated=fmt_datetime(generated),
        patient_id_markup=markup(pid[:40] + ("\u2026" if len(pid) > 40 else "")),
        demo=model.is_demo,
        footer=f"cataract-cam {package_version()} \u00b7 Decision support, not a diagnosis \u00b7 "
        f"Model {model.name[:40]} {model.version[:20]}",
    )


def _render(doc: BaseDocTemplate, story: list[Flowable], maker: Callable[..., Canvas]) -> None:
    doc.build(story, canvasmaker=maker)


def safe_filename(pseudo_id: str, suffix: str = ".pdf") -> str:
    """A report file name safe on every file system: ``cataract_report_<id>.pdf``.

    Only ``[A-Za-z0-9_-]`` survive from the ID; when anything had to change, a short hash of the
    ID is appended so that different IDs keep different names, and an ID with nothing safe left
    becomes its hash.

    Raises:
        TypeError: ``pseudo_id`` is not a str.
        ValueError: ``suffix`` is neither empty nor a dot and 1 to 10 letters or digits.
    """
    if not isinstance(pseudo_id, str):
        raise TypeError(f"pseudo_id must be a str, got {type(pseudo_id).__name__}.")
    if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
        raise ValueError("suffix must be empty or a dot followed by 1 to 10 letters or digits, such as '.pdf'.")
    ascii_id = unicodedata.normalize("NFKD", pseudo_id).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE_NAME.sub("_", ascii_id).strip("_-")
    digest = hashlib.sha256(pseudo_id.encode("utf-8")).hexdigest()
    if not stem:
        stem = digest[:16]
    elif stem != pseudo_id or len(stem) > _FILENAME_STEM_MAX:
        stem = f"{stem[: _FILENAME_STEM_MAX - 9].rstrip('_-')}-{digest[:8]}"
    return f"cataract_report_{stem}{suffix}"
