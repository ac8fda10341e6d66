"""The Batch page's run on a Dask cluster (``CATARACT_CAM_DASK``): the rows, thumbnails and CSV of a local run."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.cluster.batch import run_batch
from components.explanation.cam import METHOD_LABELS
from components.records import data_dir
from components.workflows.batch import summary_bytes, summary_row
from components.workflows.runs import BatchResult, Look, Progress, batch_row
from models import Classifier

__all__ = ["batch_run_on_cluster"]


def batch_run_on_cluster(client: Any, model: str | bytes, clf: Classifier, files: Sequence[Path],
                         names: Sequence[str], look: Look, progress: Progress | None = None) -> BatchResult:
    """:func:`batch_run` on a Dask cluster (``CATARACT_CAM_DASK``): the same rows, thumbnails and CSV.

    ``model`` is the checkpoint the workers load: a path on the server, or an upload's bytes
    (written to a temporary file in the data folder, which a worker on another machine cannot read).
    """
    class_names = tuple(clf.class_names)
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        if isinstance(model, bytes):
            (Path(tmp) / "model.pt").write_bytes(model)
            model = str(Path(tmp) / "model.pt")
        # The thumbnails and the attention verdicts are made where the photographs are decoded.
        outcomes = run_batch(client, [str(f) for f in files], tmp, model=model, method=look.method, panels=False,
                             on_worker=functools.partial(batch_row, class_names=class_names, look=look),
                             progress=progress)
    rows: list[dict[str, object]] = []
    for outcome, name in zip(outcomes, names, strict=True):
        outcome.item.file = name
        rows.append({**outcome.extra, "File": name})
    csv = summary_bytes([summary_row(o.item, class_names) for o in outcomes], class_names)
    return BatchResult(rows, csv, METHOD_LABELS.get(look.method, look.method))
