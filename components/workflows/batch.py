"""Explaining many image files: decoding on worker threads while the model runs, one result per input."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from components.base.classifier import ClassifierLike
from components.base.files import atomic_write_bytes
from components.base.tables import CsvAppender, csv_bytes
from components.explanation.cam import Explanation, explain, resolve_targets
from components.explanation.overlay import three_panel
from components.imaging.loading import IMAGE_EXTENSIONS, ImageError, decode_image
from components.lens.attention import AttentionResult
from components.lens.attention import check as check_attention
from components.screening.vocabulary import TYPICALITY_NOT_AVAILABLE
from components.typicality.score import Typicality, assess, explain_options

__all__ = ["SUMMARY_NAME", "BatchItem", "SummaryWriter", "collect_inputs", "explain_files", "panel_caption",
           "save_jpeg", "summary_fields", "summary_row", "typicality_columns", "write_summary"]

PANEL_MAX_SIDE = 1024
SUMMARY_NAME = "summary.csv"


@dataclass
class BatchItem:
    """One input's outcome: an explanation and its picture, or an error message."""

    file: str
    explanation: Explanation | None = None
    image: np.ndarray | None = None  # decoded photograph (possibly draft-reduced), RGB uint8
    panel_path: Path | None = None
    error: str | None = None
    original_size: tuple[int, int] | None = None
    typicality: Typicality | None = None  # with explain_files(..., typicality=True)
    attention: AttentionResult | None = None  # with explain_files(..., attention=True)


def collect_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named explicitly (whatever their suffix) and image files found recursively in folders."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            found.append(path)
    return found


def panel_caption(ex: Explanation) -> str:
    from components.explanation.cam import METHOD_LABELS

    explained = "" if ex.target == ex.prediction else f", explaining {ex.target}"
    return (f"Prediction: {ex.prediction} ({ex.confidence:.1%}){explained} | "
            f"{METHOD_LABELS.get(ex.method, ex.method)} at {ex.layer}")


def save_jpeg(pixels: np.ndarray, path: Path, quality: int = 90) -> None:
    """Write an RGB image as a JPEG with no metadata, whole or not at all.

    Raises:
        OSError: the file cannot be written (nothing is left half-written).
    """
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # OpenCV refuses only an impossible picture (empty, too large for JPEG)
        raise OSError(errno.EINVAL, "The picture could not be encoded as JPEG")
    atomic_write_bytes(path, encoded.tobytes())


def _unique_names(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = p.stem or "image"
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f"{stem}_{count + 1}")
    return names


def _take_decoded(pending: list[Future[tuple[np.ndarray, tuple[int, int]]] | None], i: int,
                  path: Path) -> BatchItem:
    """The item for input ``i`` from its decoding future, which is then dropped to free the pixels."""
    item = BatchItem(file=str(path))
    future = pending[i]
    pending[i] = None
    try:
        assert future is not None
        item.image, item.original_size = future.result()
    except ImageError as exc:
        item.error = str(exc)
    except OSError:
        item.error = "The file could not be read."
    return item


def _explain_chunk(classifier: ClassifierLike, items: Sequence[BatchItem], targets: Sequence[Any], *, method: str,
                   layer: str | None, batch_size: int, typicality: bool) -> None:
    """Explain (and, if asked, assess) the decoded items of one chunk in place."""
    ok = [i for i, item in enumerate(items) if item.image is not None]
    images = [image for image in (items[i].image for i in ok) if image is not None]
    if not images:
        return
    # Typicality's features come from the same forward pass as the maps (explain_options).
    explanations = explain(classifier, images, method=method, layer=layer, target=[targets[i] for i in ok],
                           batch_size=batch_size, **(explain_options(classifier) if typicality else {}))
    for i, ex in zip(ok, explanations, strict=True):
        items[i].explanation = ex
    if typicality:
        for i, result in zip(ok, assess(classifier, images, explanations=explanations), strict=True):
            items[i].typicality = result


Decoded = tuple[np.ndarray, tuple[int, int]]


def _decode_until(pool: ThreadPoolExecutor, decode: Callable[[Path], Decoded], paths: Sequence[Path],
                  pending: list[Future[Decoded] | None], submitted: int, upto: int) -> int:
    """Start decoding the inputs from ``submitted`` up to ``upto``; returns how many are now started."""
    for i in range(submitted, upto):
        pending[i] = pool.submit(decode, paths[i])
    return max(submitted, upto)


def explain_files(classifier: ClassifierLike, files: Sequence[str | os.PathLike[str]], *,
                  out_dir: Path | None = None, method: str = "gradcam", target: Any = None,
                  layer: str | None = None, alpha: float = 0.5, colormap: str = "jet",
                  workers: int = 2, batch_size: int = 8, panel_max_side: int = PANEL_MAX_SIDE,
                  keep_images: bool = False, typicality: bool = False, attention: bool = False,
                  skip: Collection[str] = (), progress: Callable[[int, int], None] | None = None
                  ) -> Iterator[BatchItem]:
    """Yield one :class:`BatchItem` per file, in input order, as each is done: any number of files.

    Decoding runs on ``workers`` threads at most one batch ahead of the model (PIL and OpenCV
    release the GIL), so no more than two batches of photographs are held whatever the number
    of files; nothing is kept once its item is yielded. Photographs are decoded at the smallest
    size that still fills a panel (DCT scaling for JPEG, a box reduction right after decoding
    otherwise), and panels are written by the same threads. A file that cannot be read becomes an
    item with ``error`` set. With ``typicality`` each item also says how unlike the model's
    training photographs it is, and with ``attention`` whether its map rests on the lens (the
    check runs on the same threads as the panels). Files in ``skip`` (as given) are left out,
    and every other keeps the panel name it would have had in the whole run.

    Raises:
        ValueError: a bad target.
    """
    every = [Path(f) for f in files]
    names_all = _unique_names(every)
    kept = [i for i, f in enumerate(files) if str(f) not in skip] if skip else range(len(every))
    paths = [every[i] for i in kept]
    names = [names_all[i] for i in kept]
    targets = resolve_targets(classifier.class_names, target, len(paths))
    min_side = max(classifier.input_size, panel_max_side * 3 // 4)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    done = 0

    def decode(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        decoded = decode_image(path, min_side=min_side)
        return decoded.pixels, decoded.original_size

    def finish(item: BatchItem, name: str) -> BatchItem:
        assert item.explanation is not None
        assert item.image is not None
        if attention:
            item.attention = check_attention(item.image, item.explanation.cam)
        if out_dir is not None:
            panel = three_panel(item.image, item.explanation.cam, alpha=alpha, colormap=colormap,
                                caption=panel_caption(item.explanation), max_side=panel_max_side)
            item.panel_path = out_dir / f"gradcam_{name}.jpg"
            save_jpeg(panel, item.panel_path)
        return item

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cataract-cam") as pool:
        pending: list[Future[tuple[np.ndarray, tuple[int, int]]] | None] = [None] * len(paths)
        submitted = 0
        for start in range(0, len(paths), batch_size):
            stop = min(start + batch_size, len(paths))
            # This batch and the next are decoding: the window moves on as batches are taken.
            submitted = _decode_until(pool, decode, paths, pending, submitted, min(stop + batch_size, len(paths)))
            items = [_take_decoded(pending, i, paths[i]) for i in range(start, stop)]
            _explain_chunk(classifier, items, targets[start:stop], method=method, layer=layer,
                           batch_size=batch_size, typicality=typicality)
            writes: list[Future[BatchItem] | None] = []
            for i, item in zip(range(start, stop), items, strict=True):
                if (out_dir is not None or attention) and item.explanation is not None:
                    writes.append(pool.submit(finish, item, names[i]))
                else:
                    writes.append(None)
            for item, fut in zip(items, writes, strict=True):
                if fut is not None:
                    try:
                        fut.result()
                    except OSError:
                        item.error = "The result picture could not be written to the output folder."
                if not keep_images:
                    item.image = None
                done += 1
                if progress is not None:
                    progress(done, len(paths))
                yield item


def summary_fields(class_names: Sequence[str]) -> list[str]:
    """``summary.csv``'s columns for a model with these classes."""
    return (["file", "prediction", "confidence"] + [f"p_{c}" for c in class_names]
            + ["target", "method", "layer", "panel", "error", "ood_score", "unlike_training", "attention"])


def typicality_columns(result: Typicality | None) -> dict[str, str]:
    """``ood_score`` and ``unlike_training`` as summary.csv writes them ("not available" without statistics)."""
    if result is None:
        return {"ood_score": "", "unlike_training": ""}
    if not result.available or result.ood_score is None:
        return {"ood_score": TYPICALITY_NOT_AVAILABLE, "unlike_training": TYPICALITY_NOT_AVAILABLE}
    return {"ood_score": f"{result.ood_score:.6f}", "unlike_training": str(bool(result.unlike_training)).lower()}


def summary_row(item: BatchItem, class_names: Sequence[str]) -> dict[str, str]:
    """One input's ``summary.csv`` row as text, failures included (the one place a row is formatted)."""
    row: dict[str, str] = {"file": item.file, "error": item.error or ""}
    ex = item.explanation
    if ex is not None:
        row.update(prediction=ex.prediction, confidence=f"{ex.confidence:.6f}", target=ex.target,
                   method=ex.method, layer=ex.layer,
                   panel=str(item.panel_path) if item.panel_path else "")
        row.update({f"p_{c}": f"{ex.probabilities[c]:.6f}" for c in class_names})
    row.update(typicality_columns(item.typicality))
    row["attention"] = item.attention.verdict if item.attention is not None else ""
    return row


def summary_bytes(rows: Iterable[Mapping[str, str]], class_names: Sequence[str]) -> bytes:
    """``summary.csv``'s content for rows made by :func:`summary_row` (or read back from a summary).

    Cells a spreadsheet would run as formulas are neutralised (:func:`components.base.tables.csv_bytes`).
    """
    return csv_bytes(summary_fields(class_names), rows)


def write_summary(items: Sequence[BatchItem], class_names: Sequence[str], path: Path) -> None:
    """``summary.csv``: one row per input, failures included, written whole or not at all.

    File names and labels that a spreadsheet would run as formulas are written as text
    (:mod:`components.base.tables`); :func:`components.base.tables.read_csv` gives them back as they were.
    """
    atomic_write_bytes(path, summary_bytes((summary_row(i, class_names) for i in items), class_names))


class SummaryWriter:
    """``summary.csv`` written row by row as a run goes, each row flushed, so a killed run keeps what it did.

    With ``resume`` an earlier run's summary in the same place is continued: :attr:`done` holds
    the inputs it has rows for (to be skipped), and new rows follow its own.

    Raises:
        ValueError: resuming a summary of other columns (another model's classes).
        OSError: the folder cannot be written.
    """

    def __init__(self, path: Path, class_names: Sequence[str], *, resume: bool = False) -> None:
        self.class_names = list(class_names)
        self._csv = CsvAppender(path, summary_fields(self.class_names), resume=resume)
        self.done = frozenset(row["file"] for row in self._csv.earlier)
        self._csv.earlier = []  # only the names are needed: let the earlier rows go

    def add(self, item: BatchItem) -> None:
        self._csv.write(summary_row(item, self.class_names))

    def add_row(self, row: Mapping[str, str]) -> None:
        """Append a row already formatted by :func:`summary_row` (a cluster run's, with its panel's place)."""
        self._csv.write(row)

    def close(self) -> None:
        self._csv.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

