"""Auditing a labelled image folder and comparing two models: pure functions for the CLI and the dashboard.

An audit explains every image with the model, checks where the attention lies
(:mod:`components.lens.attention`) and flags three things: a *suspect label* (the model confidently
disagrees with the folder's label), *attention off lens* (the map sits on the image border or on
lids and skin) and *ungradable or unreadable* (the file cannot be decoded, or no lens can be
found in it). Results go to ``audit.csv`` and a self-contained HTML gallery of the flagged
images, most suspect first, that opens from disk without a server.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import statistics
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import cv2
import numpy as np
from PIL import Image

from components.base import tables
from components.base.classifier import ClassifierLike
from components.base.errors import CataractCamError
from components.base.files import atomic_write_bytes
from components.explanation.cam import Explanation, explain
from components.explanation.faithfulness import lens_test
from components.explanation.outline import draw_region
from components.explanation.overlay import blend, font, resize_map, three_panel
from components.imaging.loading import IMAGE_EXTENSIONS, ImageError, decode_image
from components.lens import attention
from components.lens import finder as lens
from components.screening.vocabulary import DEMO_WARNING, NOT_ON_LENS
from components.workflows.batch import explain_files, panel_caption

__all__ = [
    "FLAGS",
    "FLAG_OFF_LENS",
    "FLAG_SUSPECT",
    "FLAG_UNGRADABLE",
    "SUSPECT_MAX_LABEL_PROBABILITY",
    "UNREADABLE",
    "AuditError",
    "AuditOutputs",
    "AuditRow",
    "Comparison",
    "LabelledImage",
    "Tally",
    "audit",
    "audit_rows",
    "compare",
    "comparison_picture",
    "csv_record",
    "gallery_pages",
    "load_images",
    "ranked",
    "read_labelled_folder",
    "summary",
    "top_overlap",
    "write_csv",
    "write_gallery",
]

FLAG_SUSPECT = "suspect label"
FLAG_OFF_LENS = "attention off lens"
FLAG_UNGRADABLE = "ungradable or unreadable"
# A cataract call that stands after the found lens is painted clear (faithfulness.lens_test): the
# model reads something other than the lens, whatever its map shows.
FLAG_NOT_ON_LENS = NOT_ON_LENS
FLAGS = (FLAG_SUSPECT, FLAG_OFF_LENS, FLAG_UNGRADABLE, FLAG_NOT_ON_LENS)
_POSITIVE_CLASS = "Cataract"  # the class the cleared-lens test applies to

# A label is suspect when the model gives it at most this probability, i.e. the model is at
# least 80% sure of another class. On the synthetic flipped-label experiment
# (benchmarks/bench_audit.py) this flagged the flipped labels while keeping false flags on the
# correctly labelled images under the 10% the audit allows itself.
SUSPECT_MAX_LABEL_PROBABILITY = 0.2
TOP_FRACTION = 0.2  # "overlap of the top 20% of each map" in a comparison
GALLERY_PANEL_SIDE = 320  # long side of each of the three panels in the gallery (px)
MASK_NAMES = ("pupil", "iris", "sclera", "skin")
UNREADABLE = "unreadable"


class AuditError(CataractCamError, ValueError):
    """The audit's input folder or options cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class LabelledImage:
    """One image of a labelled folder: where it is, its label, and its structure masks if any."""

    path: Path
    file: str  # relative to the data folder, with forward slashes: what reports show
    label: str  # the folder's name as given (e.g. "cataract")
    masks: Mapping[str, Path] = field(default_factory=dict)


@dataclass
class AuditRow:
    """What the audit found for one image."""

    file: str
    label: str
    prediction: str | None = None
    confidence: float | None = None
    label_probability: float | None = None  # the model's probability for the folder's label
    probabilities: dict[str, float] = field(default_factory=dict)
    verdict: str | None = None
    verdict_label: str | None = None
    modality: str = "external"
    figures: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    panel: np.ndarray | None = None  # three-panel picture, kept for flagged images only

    @property
    def suspicion(self) -> float:
        """How strongly the model doubts the label (1 - its probability), for ordering."""
        return 1.0 - self.label_probability if self.label_probability is not None else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the picture."""
        return {"file": self.file, "label": self.label, "prediction": self.prediction,
                "confidence": self.confidence, "label_probability": self.label_probability,
                "verdict": self.verdict, "figures": dict(self.figures), "flags": list(self.flags),
                "error": self.error}


# ================================================================================ reading


def read_labelled_folder(data: str | os.PathLike[str]) -> list[LabelledImage]:
    """Images in ``DATA/<class>/`` (any depth), with masks from ``DATA/masks/<stem>_<mask>.png`` when present.

    The class sub-folders are every folder directly under DATA except ``masks`` and hidden ones.
    """
    root = Path(data)
    if not root.is_dir():
        raise AuditError("The data folder does not exist; expected a folder with one sub-folder per class.")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "masks" and not p.name.startswith("."))
    mask_dir = root / "masks"
    items: list[LabelledImage] = []
    for folder in classes:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
            masks = {name: mask_dir / f"{path.stem}_{name}.png" for name in MASK_NAMES}
            masks = {k: v for k, v in masks.items() if v.is_file()}
            items.append(LabelledImage(path, path.relative_to(root).as_posix(), folder.name, masks))
    if not items:
        raise AuditError(
            "The data folder has no images in class sub-folders; expected for example cataract/ and normal/.")
    return items


def _read_masks(masks: Mapping[str, Path]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, path in masks.items():
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is not None:
            out[name] = pixels > 127
    return out


def _class_index(class_names: Sequence[str], label: str) -> int | None:
    lowered = [c.lower() for c in class_names]
    return lowered.index(label.lower()) if label.lower() in lowered else None


# ================================================================================== audit


def _judge(classifier: ClassifierLike, row: AuditRow, image: np.ndarray, ex: Explanation,
           result: attention.AttentionResult, *, alpha: float, colormap: str) -> None:
    """Flag a readable row from its attention check (and, for a cataract call, the cleared-lens test)."""
    row.verdict, row.verdict_label, row.modality = result.verdict, result.label, result.modality
    row.figures = dict(result.figures)
    if result.off_lens:
        row.flags.append(FLAG_OFF_LENS)
    if result.verdict == attention.NOT_FOUND:
        row.flags.append(FLAG_UNGRADABLE)
    if row.prediction == _POSITIVE_CLASS and result.region.found and result.modality == "external":
        cleared = lens_test(classifier, image, result.region.mask, target=_POSITIVE_CLASS).clear_lens_probability
        row.figures["clear_lens_probability"] = round(float(cleared), 6)
        if cleared >= classifier.threshold:
            row.flags.append(FLAG_NOT_ON_LENS)
    if row.flags:  # pictures only for the gallery's flagged images
        # The region the check used is outlined, so a finder that got it wrong shows.
        row.panel = three_panel(draw_region(image, result.region.as_dict()), ex.cam, alpha=alpha,
                                colormap=colormap, caption=_row_caption(row, ex), max_side=GALLERY_PANEL_SIDE)


def audit_rows(classifier: ClassifierLike, images: Sequence[LabelledImage], *, modality: str | None = None,
               method: str = "gradcam", suspect_max_probability: float = SUSPECT_MAX_LABEL_PROBABILITY,
               alpha: float = 0.5, colormap: str = "jet", workers: int = 2, batch_size: int = 8,
               progress: Callable[[int, int], None] | None = None) -> Iterator[AuditRow]:
    """Explain, check and flag every image; yield one row per image, in input order, as each is done.

    Any number of images: at most a few batches of photographs are held at once, and a row keeps
    its picture (for the gallery) only when it is flagged. ``modality``: ``external``, ``fundus``
    or None to detect it per image. Labels that are not one of the model's classes are reported
    but never flagged as suspect. A bad file never stops the rest.

    Raises:
        AuditError: the suspect-label probability is outside [0, 0.5).
    """
    if not 0.0 <= suspect_max_probability < 0.5:
        raise AuditError(
            f"The suspect-label probability must lie in [0, 0.5), got {suspect_max_probability}."
        )
    names = tuple(classifier.class_names)
    # Rows wait here in input order; a readable one also waits for its attention check.
    Pending = tuple[AuditRow, np.ndarray | None, Explanation | None, Future[attention.AttentionResult] | None]
    pending: deque[Pending] = deque()

    def check(image: np.ndarray, cam: np.ndarray, masks: Mapping[str, Path]) -> attention.AttentionResult:
        return attention.check(image, cam, modality=modality, masks=_read_masks(masks) or None)

    def finish(row: AuditRow, image: np.ndarray | None, ex: Explanation | None,
               fut: Future[attention.AttentionResult] | None) -> AuditRow:
        if fut is not None and image is not None and ex is not None:
            _judge(classifier, row, image, ex, fut.result(), alpha=alpha, colormap=colormap)
        return row

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cataract-cam-audit") as pool:
        items = explain_files(classifier, [i.path for i in images], method=method, workers=workers,
                              batch_size=batch_size, keep_images=True, progress=progress)
        for source, item in zip(images, items, strict=True):
            row = AuditRow(file=source.file, label=source.label)
            ex = item.explanation
            if ex is None or item.image is None:
                row.error = item.error or "The file could not be read."
                row.verdict = UNREADABLE
                row.flags.append(FLAG_UNGRADABLE)
                pending.append((row, None, None, None))
            else:
                row.prediction, row.confidence = ex.prediction, round(float(ex.confidence), 6)
                row.probabilities = {k: round(float(v), 6) for k, v in ex.probabilities.items()}
                label_index = _class_index(names, source.label)
                if label_index is not None:
                    row.label_probability = round(float(ex.probabilities[names[label_index]]), 6)
                    if row.label_probability <= suspect_max_probability:
                        row.flags.append(FLAG_SUSPECT)
                # Lens finding runs on the pool while the model explains the next batch; only a
                # bounded number of decoded images wait for their verdict.
                pending.append((row, item.image, ex, pool.submit(check, item.image, ex.cam, source.masks)))
            while len(pending) > 2 * batch_size:
                yield finish(*pending.popleft())
        while pending:
            yield finish(*pending.popleft())


def audit(classifier: ClassifierLike, images: Sequence[LabelledImage], **options: Any) -> list[AuditRow]:
    """:func:`audit_rows` as a list: for a set small enough to hold (a page's run, a cluster task)."""
    return list(audit_rows(classifier, images, **options))


def _row_caption(row: AuditRow, ex: Explanation) -> str:
    return f"Label: {row.label} | {panel_caption(ex)} | Attention: {row.verdict_label or row.verdict}"


class Tally:
    """What the audit's summary needs of its rows, kept as counts and short lists: rows can stream past it."""

    def __init__(self) -> None:
        self.n = 0
        self.verdicts: Counter[str] = Counter()
        self.ious: list[float] = []
        self.tested = 0
        self.suspect: list[str] = []
        self.off_lens: list[str] = []
        self.not_on_lens: list[str] = []

    def add(self, row: AuditRow) -> None:
        self.n += 1
        self.verdicts[row.verdict or UNREADABLE] += 1
        if row.figures.get("lens_iou") is not None:
            self.ious.append(float(row.figures["lens_iou"]))
        if row.figures.get("clear_lens_probability") is not None:
            self.tested += 1
            if FLAG_NOT_ON_LENS in row.flags:
                self.not_on_lens.append(row.file)
        if FLAG_SUSPECT in row.flags:
            self.suspect.append(row.file)
        if FLAG_OFF_LENS in row.flags:
            self.off_lens.append(row.file)

    def summary(self) -> dict[str, Any]:
        """The audit in the stable JSON shape (see :func:`summary`)."""
        n, verdicts = self.n, self.verdicts
        return {
            "n": n,
            "verdicts": {v: verdicts[v] for v in (*attention.VERDICTS, UNREADABLE) if verdicts[v]},
            "on_lens_rate": round(verdicts[attention.ON_LENS] / n, 4) if n else 0.0,
            "suspect_labels": list(self.suspect),
            "off_lens": list(self.off_lens),
            "lens_iou_median": round(float(statistics.median(self.ious)), 4) if self.ious else None,
            "lens_tested": self.tested,
            "not_on_lens": list(self.not_on_lens),
            "not_on_lens_rate": round(len(self.not_on_lens) / self.tested, 4) if self.tested else None,
        }


def summary(rows: Iterable[AuditRow]) -> dict[str, Any]:
    """The audit in the stable JSON shape: n, verdicts, on_lens_rate, suspect_labels, off_lens, lens_iou_median.

    ``on_lens_rate`` is over all images (unreadable ones count as not on the lens);
    ``not_on_lens_rate`` is the share of the lens-tested cataract calls that survive a cleared
    lens (None when none was tested);
    ``lens_iou_median`` is over the images with a pupil mask (a lens not found counts as 0), or
    None when there are none.
    """
    tally = Tally()
    for row in rows:
        tally.add(row)
    return tally.summary()


def _rank(row: AuditRow) -> tuple[bool, float, bool, str]:
    return (FLAG_SUSPECT not in row.flags, -row.suspicion, FLAG_OFF_LENS not in row.flags, row.file)


def ranked(rows: Iterable[AuditRow]) -> list[AuditRow]:
    """Flagged rows, most suspect first: suspect labels by the model's doubt, then attention off lens, then the rest."""
    return sorted((r for r in rows if r.flags), key=_rank)


# ================================================================================ writing

CSV_FIELDS = ("file", "label", "prediction", "confidence", "label_probability", "verdict", "flags",
              "energy_in_lens", "energy_in_lens_zone", "peak_in_lens", "energy_in_border", "energy_on_skin",
              "spread", "lens_confidence", "lens_iou", "error", "clear_lens_probability")


def csv_record(r: AuditRow) -> dict[str, Any]:
    """One image's ``audit.csv`` row as text (the one place a row is formatted)."""
    record: dict[str, Any] = {
        "file": r.file, "label": r.label, "prediction": r.prediction or "",
        "confidence": "" if r.confidence is None else f"{r.confidence:.6f}",
        "label_probability": "" if r.label_probability is None else f"{r.label_probability:.6f}",
        "verdict": r.verdict or "", "flags": "; ".join(r.flags), "error": r.error or "",
        "clear_lens_probability": r.figures.get("clear_lens_probability", "")}
    for key in CSV_FIELDS[7:15]:
        value = r.figures.get(key)
        record[key] = "" if value is None else (str(value).lower() if isinstance(value, bool) else f"{value}")
    return record


def write_csv(rows: Iterable[AuditRow], path: str | os.PathLike[str]) -> None:
    """``audit.csv``: one row per image, failures included, written whole or not at all; formula-like cells as text."""
    tables.write_csv(path, CSV_FIELDS, (csv_record(r) for r in rows))


def _jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


_GALLERY_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} .meta{color:#555;margin:0 0 16px}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;margin:0 0 16px;border-radius:4px}
table.sum{border-collapse:collapse;margin:0 0 20px} table.sum td{padding:2px 12px 2px 0}
figure{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 18px;padding:10px}
figure img{max-width:100%;height:auto;display:block}
figcaption{margin-top:6px;font-size:14px} .flag{display:inline-block;background:#c0392b;color:#fff;
border-radius:3px;padding:1px 6px;margin-right:6px;font-size:12px} .flag.off{background:#d35400}
.flag.ungr{background:#7f8c8d} .figs{color:#444;font-size:13px}
"""


GALLERY_PAGE_SIZE = 100
"""Flagged images per gallery page: a page stays a few megabytes however many are flagged."""
GALLERY_NAME = "gallery.html"


def gallery_page_name(page: int) -> str:
    """``gallery.html`` for the first page, ``gallery-2.html`` and on for the next."""
    return GALLERY_NAME if page == 1 else f"gallery-{page}.html"


def _figure(r: AuditRow, jpeg: bytes | None) -> str:
    esc = html.escape
    css = {FLAG_SUSPECT: "flag", FLAG_OFF_LENS: "flag off", FLAG_UNGRADABLE: "flag ungr", FLAG_NOT_ON_LENS: "flag off"}
    badges = "".join(f'<span class="{css[f]}">{esc(f)}</span>' for f in r.flags)
    img = (f'<img alt="{esc(r.file)}" src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}">'
           if jpeg is not None else "")
    if r.error:
        detail = esc(r.error)
    else:
        p = "" if r.label_probability is None else f", model's probability for the label {r.label_probability:.1%}"
        detail = (f"Label {esc(r.label)}; prediction {esc(r.prediction or '')} ({(r.confidence or 0):.1%})"
                  f"{esc(p)}; attention: {esc(r.verdict_label or r.verdict or '')}")
    figs = ", ".join(f"{esc(label)} {esc(value)}" for label, value in attention.describe(r.figures, r.modality))
    return (f"<figure>{img}<figcaption>{badges}<b>{esc(r.file)}</b><br>{detail}"
            f'<div class="figs">{figs}</div></figcaption></figure>')


def gallery_pages(flagged: Sequence[AuditRow], jpeg: Callable[[AuditRow], bytes | None], stats: Mapping[str, Any], *,
                  model_name: str = "", demo: bool = False, title: str = "Audit: flagged images",
                  page_size: int = GALLERY_PAGE_SIZE) -> Iterator[tuple[str, bytes]]:
    """The gallery's pages as (file name, HTML bytes): ``flagged`` in that order, ``page_size`` a page.

    Each page holds its pictures inline (base64 JPEG from ``jpeg(row)``) and escapes all text, so it
    opens from disk in any browser with no server and nothing fetched; pages link to each other.
    """
    esc = html.escape
    pages = max(1, -(-len(flagged) // page_size))
    counts = ", ".join(f"{esc(k)}: {v}" for k, v in stats["verdicts"].items())
    for page in range(1, pages + 1):
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 # Nothing may load from anywhere: inline pictures and styles only.
                 '<meta http-equiv="Content-Security-Policy" '
                 'content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">',
                 f"<title>{esc(title)}</title><style>{_GALLERY_STYLE}</style></head><body>",
                 f"<h1>{esc(title)}</h1>",
                 f'<p class="meta">Model: {esc(model_name or "unnamed")}. Decision support only, not a diagnosis.</p>']
        if demo:
            parts.append(f'<p class="warn">{esc(DEMO_WARNING)}</p>')
        parts.append('<table class="sum">'
                     f"<tr><td>Images</td><td>{stats['n']}</td></tr>"
                     f"<tr><td>Attention on the lens</td><td>{stats['on_lens_rate']:.1%}</td></tr>"
                     f"<tr><td>Verdicts</td><td>{counts}</td></tr>"
                     f"<tr><td>Suspect labels</td><td>{len(stats['suspect_labels'])}</td></tr>"
                     f"<tr><td>Attention off lens</td><td>{len(stats['off_lens'])}</td></tr>"
                     f"<tr><td>Cataract calls that do not rest on the lens</td><td>{len(stats['not_on_lens'])} of "
                     f"{stats['lens_tested']} tested</td></tr>"
                     f"<tr><td>Flagged (shown most suspect first)</td><td>{len(flagged)}</td></tr></table>")
        links = ""
        if pages > 1:
            first = (page - 1) * page_size + 1
            last = min(page * page_size, len(flagged))
            nav = [f'<a href="{gallery_page_name(page - 1)}">previous</a>'] if page > 1 else []
            nav.append(f"page {page} of {pages}: flagged images {first} to {last}")
            if page < pages:
                nav.append(f'<a href="{gallery_page_name(page + 1)}">next</a>')
            links = f'<p class="meta">{" · ".join(nav)}</p>'
        parts.append(links)
        parts.extend(_figure(r, jpeg(r)) for r in flagged[(page - 1) * page_size:page * page_size])
        parts.append(links)
        parts.append("</body></html>")
        yield gallery_page_name(page), "\n".join(parts).encode("utf-8")


def _panel_jpeg(row: AuditRow) -> bytes | None:
    return None if row.panel is None else _jpeg(row.panel)


def write_gallery(rows: Sequence[AuditRow], path: str | os.PathLike[str], *, model_name: str = "",
                  demo: bool = False, title: str = "Audit: flagged images",
                  page_size: int = GALLERY_PAGE_SIZE) -> int:
    """The gallery of rows held in memory: ``path`` (``gallery.html``) and, past ``page_size`` images,
    ``gallery-2.html`` and on beside it. Returns the number of images shown."""
    flagged = ranked(rows)
    folder = Path(path).parent
    for number, (name, page) in enumerate(gallery_pages(flagged, _panel_jpeg, summary(rows), model_name=model_name,
                                                        demo=demo, title=title, page_size=page_size), start=1):
        atomic_write_bytes(Path(path) if number == 1 else folder / name, page)
    return len(flagged)


class _SpilledRows(Sequence[AuditRow]):
    """Flagged rows kept on disk as JSON lines, read back one at a time in the order of ``offsets``."""

    def __init__(self, path: Path, offsets: list[int]) -> None:
        self._path = path
        self._offsets = offsets
        self.pictures: dict[int, str | None] = {}  # id of a row read back -> its saved picture

    def __len__(self) -> int:
        return len(self._offsets)

    def _load(self, offset: int) -> AuditRow:
        with self._path.open("rb") as f:
            f.seek(offset)
            data = json.loads(f.readline())
        picture = data.pop("picture")
        row = AuditRow(**data)
        row.panel = None
        self.pictures[id(row)] = picture
        return row

    @overload
    def __getitem__(self, index: int) -> AuditRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[AuditRow]: ...

    def __getitem__(self, index: int | slice) -> AuditRow | list[AuditRow]:
        if isinstance(index, slice):
            return [self._load(o) for o in self._offsets[index]]
        return self._load(self._offsets[index])


class AuditOutputs:
    """``audit.csv`` and the gallery of a run of any size, written as its rows stream past.

    Each row is appended to ``audit.csv`` (flushed) as it comes; a flagged row goes to a working
    file as one JSON line and its picture to a JPEG beside it, so that only its ranking key stays
    in memory; the summary is kept as counts. :meth:`finish` ranks the flagged images, writes the
    paged gallery reading them back a page at a time, and removes the working folder.

    Raises:
        OSError: the folder cannot be written.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._csv = tables.CsvAppender(folder / "audit.csv", CSV_FIELDS)
        self._work = Path(tempfile.mkdtemp(prefix=".gallery-", dir=folder))
        self._rows = (self._work / "flagged.jsonl").open("wb")
        self._keys: list[tuple[tuple[bool, float, bool, str], int]] = []
        self.tally = Tally()

    @property
    def flagged_count(self) -> int:
        """How many flagged images the gallery will show."""
        return len(self._keys)

    def add(self, row: AuditRow) -> None:
        self._csv.write(csv_record(row))
        self.tally.add(row)
        if not row.flags:
            return
        picture = None
        if row.panel is not None:
            picture = str(self._work / f"{len(self._keys)}.jpg")
            Path(picture).write_bytes(_jpeg(row.panel))
            row.panel = None  # the caller's row need not hold it either
        record = {"file": row.file, "label": row.label, "prediction": row.prediction, "confidence": row.confidence,
                  "label_probability": row.label_probability, "verdict": row.verdict,
                  "verdict_label": row.verdict_label, "modality": row.modality, "figures": row.figures,
                  "flags": row.flags, "error": row.error, "picture": picture}
        self._keys.append((_rank(row), self._rows.tell()))
        self._rows.write(json.dumps(record, default=_plain).encode("utf-8") + b"\n")

    def finish(self, *, model_name: str = "", demo: bool = False, page_size: int = GALLERY_PAGE_SIZE) -> int:
        """Write the gallery's pages; returns the number of images they show."""
        self._csv.close()
        self._rows.close()
        self._keys.sort(key=lambda k: k[0])
        flagged = _SpilledRows(self._work / "flagged.jsonl", [offset for _, offset in self._keys])

        def jpeg(row: AuditRow) -> bytes | None:
            picture = flagged.pictures.pop(id(row), None)
            return None if picture is None else Path(picture).read_bytes()

        try:
            for name, page in gallery_pages(flagged, jpeg, self.tally.summary(), model_name=model_name,
                                            demo=demo, page_size=page_size):
                atomic_write_bytes(self.folder / name, page)
        finally:
            shutil.rmtree(self._work, ignore_errors=True)
        return len(flagged)


def _plain(value: Any) -> Any:
    """numpy scalars in a row's figures as plain numbers for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON data")


# ================================================================================ compare


def top_overlap(cam_a: np.ndarray, cam_b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Share of map A's top ``fraction`` of pixels that are also in map B's top ``fraction`` (ties: raster order)."""
    a = np.asarray(cam_a, np.float64).ravel()
    b = np.asarray(cam_b, np.float64).ravel()
    if a.shape != b.shape:
        raise AuditError(f"The maps have {a.size} and {b.size} values; expected the same number.")
    if not 0.0 < fraction <= 1.0:
        raise AuditError(f"The top fraction must lie in (0, 1], got {fraction}.")
    k = max(1, round(fraction * a.size))
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    return float(np.intersect1d(top_a, top_b).size / k)


@dataclass
class Comparison:
    """Two models on one image: predictions, agreement, how alike their maps are, both verdicts."""

    file: str
    prediction_a: str
    confidence_a: float
    prediction_b: str
    confidence_b: float
    agree: bool
    spearman: float
    top_overlap: float
    verdict_a: str
    verdict_b: str
    picture: np.ndarray | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "prediction_a": self.prediction_a, "confidence_a": round(self.confidence_a, 6),
                "prediction_b": self.prediction_b, "confidence_b": round(self.confidence_b, 6),
                "agree": self.agree, "spearman": round(self.spearman, 4),
                "top20_overlap": round(self.top_overlap, 4), "verdict_a": self.verdict_a, "verdict_b": self.verdict_b}


def comparison_picture(image: np.ndarray, cam_a: np.ndarray, cam_b: np.ndarray, *, title_a: str = "Model A",
                       title_b: str = "Model B", caption: str = "", alpha: float = 0.5, colormap: str = "jet",
                       max_side: int = 512) -> np.ndarray:
    """Original | overlay of map A | overlay of map B, titled, as one RGB picture."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    panels = [image, blend(image, cam_a, alpha=alpha, colormap=colormap),
              blend(image, cam_b, alpha=alpha, colormap=colormap)]
    titles = ["Original", title_a, title_b]
    unit = max(12, round(max(h, w) / 32))
    pad, title_h = unit, unit + 8
    caption_h = unit + pad if caption else 0
    canvas = Image.new("RGB", (pad + 3 * (w + pad), pad + title_h + h + caption_h + pad), (255, 255, 255))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    for i, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        x = pad + i * (w + pad)
        canvas.paste(Image.fromarray(panel), (x, pad + title_h))
        draw.text((x + w / 2, pad + title_h / 2), title, fill=(20, 20, 20), font=font(unit + 2), anchor="mm")
    if caption:
        draw.text((pad, pad + title_h + h + pad // 2), caption, fill=(40, 40, 40), font=font(unit - 2), anchor="la")
    return np.asarray(canvas)


def compare(classifier_a: ClassifierLike, classifier_b: ClassifierLike, images: Sequence[np.ndarray], *,
            files: Sequence[str] | None = None, names: tuple[str, str] = ("Model A", "Model B"),
            modality: str | None = None, method: str = "gradcam", alpha: float = 0.5,
            colormap: str = "jet", pictures: bool = True) -> list[Comparison]:
    """Both models on each image: predictions side by side, agreement, map similarity, verdicts, one picture each.

    Map similarity is measured on a common grid (the larger of the two input sizes): Spearman
    rank correlation and the overlap of the top 20% of each map.
    """
    from components.explanation.faithfulness import spearman

    images = list(images)
    files = list(files) if files is not None else [f"image {i + 1}" for i in range(len(images))]
    if len(files) != len(images):
        raise AuditError(f"Expected {len(images)} file names for {len(images)} images, got {len(files)}.")
    ex_a = explain(classifier_a, images, method=method)
    ex_b = explain(classifier_b, images, method=method)
    size = max(int(classifier_a.input_size), int(classifier_b.input_size))
    out: list[Comparison] = []
    for file, image, a, b in zip(files, images, ex_a, ex_b, strict=True):
        cam_a, cam_b = resize_map(a.cam, (size, size)), resize_map(b.cam, (size, size))
        region = lens.find_lens(image, modality)
        va = attention.check(image, a.cam, region=region)
        vb = attention.check(image, b.cam, region=region)
        picture = None
        if pictures:
            picture = comparison_picture(
                image, a.cam, b.cam, title_a=f"{names[0]}: {a.prediction} {a.confidence:.0%}",
                title_b=f"{names[1]}: {b.prediction} {b.confidence:.0%}",
                caption=f"Attention: {names[0]} {va.label}; {names[1]} {vb.label}", alpha=alpha, colormap=colormap)
        out.append(Comparison(file, a.prediction, float(a.confidence), b.prediction, float(b.confidence),
                              a.prediction == b.prediction, spearman(cam_a, cam_b), top_overlap(cam_a, cam_b),
                              va.verdict, vb.verdict, picture))
    return out


def load_images(files: Sequence[str | os.PathLike[str]]) -> list[tuple[str, np.ndarray | None, str | None]]:
    """(name, pixels or None, error or None) for each file; a bad file never stops the others."""
    out: list[tuple[str, np.ndarray | None, str | None]] = []
    for f in files:
        name = Path(f).name
        try:
            out.append((name, decode_image(f).pixels, None))
        except ImageError as exc:
            out.append((name, None, str(exc)))
        except OSError:
            out.append((name, None, "The file could not be read."))
    return out
