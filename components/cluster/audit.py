"""Audits on a Dask cluster: a labelled folder or ``s3://`` prefix checked by the workers, ``audit.csv`` and the
gallery written by the client exactly as a local audit writes them.

Each worker runs the local audit (:func:`components.workflows.audit.audit`) on its chunk of images, with the
model its plugin loaded once; the rows, with the small gallery pictures of flagged images, come
back to the client.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from components.cluster import storage
from components.cluster.batch import (
    CHUNK_SIZE,
    InOrder,
    place_input,
    register_model,
    run_chunks,
    worker_classifier,
)
from components.cluster.storage import S3Settings
from components.imaging.loading import IMAGE_EXTENSIONS
from components.workflows import audit
from components.workflows.audit import FLAG_UNGRADABLE, UNREADABLE, AuditRow, LabelledImage

__all__ = ["AuditOutcome", "LabelledSource", "labelled_sources", "publish_outputs", "run_audit", "write_outputs"]


@dataclass(frozen=True)
class LabelledSource:
    """One image of a labelled set wherever it lives: its location, its name in reports, its label, its masks."""

    source: str  # a local path or an s3:// URL
    file: str  # relative to the set, with forward slashes
    label: str
    masks: Mapping[str, str] = field(default_factory=dict)  # mask name -> location


@dataclass
class AuditOutcome:
    """One image's audit row as it comes back from a worker, with its place in the input."""

    index: int
    row: AuditRow


def labelled_sources(data: str, settings: S3Settings | None = None) -> list[LabelledSource]:
    """The images of a labelled folder or prefix (``DATA/<class>/...``, masks in ``DATA/masks/``), in order.

    A local folder is read by :func:`components.workflows.audit.read_labelled_folder`; a prefix is listed
    the same way: every first-level name except ``masks`` and hidden ones is a class.

    Raises:
        TypeError: ``data`` is not text.
        AuditError: there are no images in class sub-folders (or the folder does not exist).
        StorageError: the prefix cannot be listed.
    """
    if not isinstance(data, str):
        raise TypeError(f"data must be a folder or an s3:// prefix as text, got {type(data).__name__}.")
    if not storage.is_s3(data):
        return [LabelledSource(str(i.path), i.file, i.label, {k: str(v) for k, v in i.masks.items()})
                for i in audit.read_labelled_folder(data)]
    _, key = storage.split_s3(data)
    prefix = key if not key or key.endswith("/") else key + "/"
    relative = {u: storage.split_s3(u)[1][len(prefix):] for u in storage.list_prefix(data, settings)}
    masks = {r.removeprefix("masks/"): u for u, r in relative.items() if r.startswith("masks/") and "/" not in r[6:]}
    out: list[LabelledSource] = []
    for url, rel in sorted(relative.items(), key=lambda kv: kv[1]):
        label, _, rest = rel.partition("/")
        if not rest or label == "masks" or label.startswith(".") or \
                PurePosixPath(rest).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        stem = PurePosixPath(rest).stem
        found = {name: masks[f"{stem}_{name}.png"] for name in audit.MASK_NAMES if f"{stem}_{name}.png" in masks}
        out.append(LabelledSource(url, rel, label, found))
    if not out:
        raise audit.AuditError(
            "The prefix has no images in class sub-folders; expected for example cataract/ and normal/.")
    return out


@dataclass(frozen=True)
class _AuditOptions:
    plugin: str
    settings: S3Settings | None
    modality: str | None
    method: str
    suspect_max_probability: float


def _unreadable(item: LabelledSource, error: str) -> AuditRow:
    """The row the local audit gives a file it cannot read."""
    return AuditRow(file=item.file, label=item.label, error=error, verdict=UNREADABLE, flags=[FLAG_UNGRADABLE])


def _audit_task(chunk: Sequence[tuple[int, LabelledSource]], options: _AuditOptions) -> list[AuditOutcome]:
    """Audit one chunk of (index, image) on this worker; one outcome per image."""
    classifier = worker_classifier(options.plugin)
    outcomes: dict[int, AuditOutcome] = {}
    with tempfile.TemporaryDirectory(prefix="cataract-cam-audit-") as tmp:
        folder = Path(tmp)
        images: list[tuple[int, LabelledImage]] = []
        for index, item in chunk:
            path, error = place_input(item.source, str(index), folder, options.settings)
            if error is not None:
                outcomes[index] = AuditOutcome(index, _unreadable(item, error))
                continue
            masks: dict[str, Path] = {}
            for name, location in item.masks.items():
                mask_path, mask_error = place_input(location, f"{index}_{name}", folder, options.settings)
                if mask_error is None:  # a mask that cannot be read is left out, as locally
                    masks[name] = mask_path
            images.append((index, LabelledImage(path, item.file, item.label, masks)))
        rows = audit.audit(classifier, [i for _, i in images], modality=options.modality, method=options.method,
                           suspect_max_probability=options.suspect_max_probability, workers=1,
                           batch_size=max(1, len(images)))
        for (index, _), row in zip(images, rows, strict=True):
            outcomes[index] = AuditOutcome(index, row)
    return [outcomes[index] for index, _ in chunk]


def run_audit(client: Any, items: Sequence[LabelledSource], *, model: str | os.PathLike[str] | None = None,
              settings: S3Settings | None = None, modality: str | None = None, method: str = "gradcam",
              suspect_max_probability: float = audit.SUSPECT_MAX_LABEL_PROBABILITY, chunk_size: int = CHUNK_SIZE,
              torch_threads: int | None = None, progress: Callable[[int, int], None] | None = None,
              on_row: Callable[[AuditRow], None] | None = None) -> tuple[list[AuditRow], Any]:
    """Audit ``items`` on the cluster: one row per image in input order, and the client's copy of the model.

    The rows are those :func:`components.workflows.audit.audit` gives locally; write them with
    :func:`write_outputs`. With ``on_row`` each row is handed to it in input order as soon as the
    rows before it are in, and none is kept (the list returned is empty): give it
    :meth:`~components.workflows.audit.AuditOutputs.add` to audit any number of images.

    Raises:
        TypeError: ``items`` are not :class:`LabelledSource`.
        AuditError: the suspect-label probability is outside [0, 0.5).
        ValueError: ``chunk_size`` < 1.
        ClusterError: the model cannot be loaded on the workers, or the scheduler was lost.
        ExplainError: a bad method.
    """
    if not all(isinstance(i, LabelledSource) for i in items):
        raise TypeError("items must be LabelledSource objects; see labelled_sources().")
    if not 0.0 <= suspect_max_probability < 0.5:
        raise audit.AuditError(f"The suspect-label probability must lie in [0, 0.5), got {suspect_max_probability}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    plugin, classifier = register_model(client, model, settings=settings, torch_threads=torch_threads)
    options = _AuditOptions(plugin, settings, modality, method, suspect_max_probability)
    kept: list[AuditRow] = []
    sink = on_row if on_row is not None else kept.append

    def failed(message: str, chunk: Sequence[tuple[int, LabelledSource]]) -> list[AuditOutcome]:
        return [AuditOutcome(i, _unreadable(item, message)) for i, item in chunk]

    in_order = InOrder(range(len(items)), lambda outcome: sink(outcome.row))
    chunks = [[(k + j, item) for j, item in enumerate(items[k:k + chunk_size])]
              for k in range(0, len(items), chunk_size)]
    run_chunks(client, _audit_task, chunks, options, in_order.add, failed=failed,
               progress=in_order.progress(progress))
    return kept, classifier


def publish_outputs(folder: Path, out: str, settings: S3Settings | None = None) -> None:
    """Copy ``audit.csv`` and the gallery's pages from a local folder to an ``s3://`` prefix.

    Raises:
        StorageError: they cannot be written there.
    """
    for name in ["audit.csv", *sorted(p.name for p in folder.glob("gallery*.html"))]:
        storage.write_bytes(storage.join(out, name), (folder / name).read_bytes(), settings)


def write_outputs(rows: Sequence[AuditRow], out: str, *, model_name: str = "", demo: bool = False,
                  settings: S3Settings | None = None) -> int:
    """``audit.csv`` and ``gallery.html`` in a folder or an ``s3://`` prefix, written by the local audit's writers.

    Returns the number of images the gallery shows.

    Raises:
        TypeError: ``out`` is not text.
        StorageError: the outputs cannot be written.
    """
    if not isinstance(out, str):
        raise TypeError(f"out must be a folder or an s3:// prefix as text, got {type(out).__name__}.")
    if not storage.is_s3(out):
        Path(out).mkdir(parents=True, exist_ok=True)
        audit.write_csv(rows, Path(out) / "audit.csv")
        return audit.write_gallery(rows, Path(out) / "gallery.html", model_name=model_name, demo=demo)
    with tempfile.TemporaryDirectory(prefix="cataract-cam-audit-out-") as tmp:
        audit.write_csv(rows, Path(tmp) / "audit.csv")
        shown = audit.write_gallery(rows, Path(tmp) / "gallery.html", model_name=model_name, demo=demo)
        publish_outputs(Path(tmp), out, settings)
    return shown
