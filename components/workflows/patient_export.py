"""Everything held on one patient, for the patient's right of access: the store's export plus the PDF report."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from components.base.classifier import ClassifierLike
from components.records import Identity, RecordStore
from components.workflows.review import stored_report

__all__ = ["export_patient", "export_patient_zip"]


def export_patient(store: RecordStore, pseudo_id: str, folder: Path, classifier: ClassifierLike, *,
                   actor: Identity) -> dict[str, Any]:
    """Everything held on one patient into ``folder``: the store's export (JSON, photographs, maps) and the PDF.

    A patient with no photographs has no report: the JSON's exams, analyses and reviews are empty.
    The PDF is made before anything is written, so the store logs the export only once all of it
    is in ``folder``. Returns the store's JSON document.

    Raises:
        RecordsError: the actor may not export, or the patient or a photograph is not stored.
        ReportError: the report cannot be made (nothing is written or logged then).
    """
    pdf = stored_report(store, pseudo_id, classifier) if store.exams(pseudo_id) else None
    return store.export_patient(pseudo_id, folder, actor=actor,
                                files={"report.pdf": pdf} if pdf is not None else None)


def export_patient_zip(store: RecordStore, pseudo_id: str, classifier: ClassifierLike, *, actor: Identity) -> bytes:
    """:func:`export_patient` as one ZIP archive, built in a private temporary folder that is then removed.

    Raises:
        RecordsError: as :func:`export_patient`.
    """
    with tempfile.TemporaryDirectory(prefix="cataract-cam-export-") as tmp:
        folder = Path(tmp)
        export_patient(store, pseudo_id, folder, classifier, actor=actor)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(folder).as_posix())
        return buffer.getvalue()
