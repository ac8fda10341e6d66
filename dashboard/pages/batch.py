"""Batch: many photographs through the engine path of `cataract-cam batch`; a table, a gallery and a CSV."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from components import review_session as rs
from components.batch import BatchItem, collect_inputs, explain_files, write_summary
from components.gradcam import METHOD_LABELS
from components.imaging import IMAGE_EXTENSIONS
from components.overlay import blend
from components.records import data_dir
from dashboard import state

UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
THUMB_SIDE = 320
GALLERY_MAX = 60
SOURCES = {"upload": "Upload photographs", "folder": "A folder in the data folder"}


def _run(clf: object, files: list[Path], names: list[str]) -> list[dict[str, object]]:
    method = st.session_state.get("method", "gradcam")
    colormap = st.session_state.get("colormap", "jet")
    alpha = float(st.session_state.get("alpha", 0.5))
    bar = st.progress(0.0, text=f"Explaining {len(files)} photographs…")
    items: list[BatchItem] = []
    rows: list[dict[str, object]] = []
    # keep_images: the gallery needs the photograph, shrunk to a thumbnail at once.
    for done, item in enumerate(explain_files(clf, files, method=method, keep_images=True), start=1):
        name = names[done - 1]
        item.file = name  # the table and the CSV show the name the user knows, not a temp path
        thumb = None
        verdict = None
        if item.explanation is not None and item.image is not None:
            small = rs.downscale(item.image, THUMB_SIDE)
            # Kept as JPEG bytes in the session: a few KB each, even for a long batch.
            thumb = rs.jpeg_bytes(blend(small, item.explanation.cam, alpha=alpha, colormap=colormap))
            found = rs.attention_for(item.image, item.explanation)
            verdict = found.get("label") or found.get("verdict")
        item.image = None
        items.append(item)
        ex = item.explanation
        row: dict[str, object] = {
            "File": name,
            "Prediction": ex.prediction if ex else None,
            "Confidence": ex.confidence if ex else None,
            **{f"P({c})": (ex.probabilities[c] if ex else None) for c in clf.class_names},  # type: ignore[attr-defined]
            "Error": item.error or "",
            "_thumb": thumb,
        }
        row["Attention"] = verdict
        rows.append(row)
        bar.progress(done / len(files), text=f"Explained {done} of {len(files)}")
    bar.empty()
    with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
        summary = Path(tmp) / "summary.csv"
        write_summary(items, clf.class_names, summary)  # type: ignore[attr-defined]
        st.session_state["batch_csv"] = summary.read_bytes()
    st.session_state["batch_method"] = METHOD_LABELS.get(method, method)
    return rows


def _uploads_to_files(uploads: list, folder: Path) -> tuple[list[Path], list[str]]:
    files, names = [], []
    for i, upload in enumerate(uploads):
        suffix = Path(upload.name).suffix.lower()
        # The engine reads files; these live in a private temporary folder inside the data folder
        # and are named by position, so no patient name reaches the disk.
        path = folder / f"{i:05d}{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"
        path.write_bytes(upload.getvalue())
        files.append(path)
        names.append(upload.name)
    return files, names


def results(rows: list[dict[str, object]]) -> None:
    table = {key: [r.get(key) for r in rows] for key in rows[0] if key != "_thumb"}
    failed = sum(1 for r in rows if r["Error"])
    st.subheader(f"Results: {len(rows)} photographs" + (f", {failed} could not be read" if failed else ""))
    columns = {"Confidence": st.column_config.ProgressColumn("Confidence", format="percent",
                                                             min_value=0.0, max_value=1.0)}
    for key in table:
        if key.startswith("P("):
            columns[key] = st.column_config.NumberColumn(key, format="percent")
    st.dataframe(table, hide_index=True, width="stretch", column_config=columns)
    st.download_button("Download CSV", data=st.session_state.get("batch_csv", b""),
                       file_name="summary.csv", mime="text/csv", icon=":material/download:",
                       on_click="ignore")
    shown = [r for r in rows if r["_thumb"] is not None][:GALLERY_MAX]
    if shown:
        st.subheader("Gallery")
        limit = f"; the first {GALLERY_MAX} shown" if len(shown) == GALLERY_MAX else ""
        st.caption(f"Overlays ({st.session_state.get('batch_method', 'Grad-CAM')}), highest confidence first{limit}")
        shown.sort(key=lambda r: -float(r["Confidence"] or 0.0))
        columns_ = st.columns(4)
        for i, row in enumerate(shown):
            thumb = row["_thumb"]
            assert isinstance(thumb, bytes)
            caption = f"{state.plain(str(row['File']))}: {row['Prediction']} ({float(row['Confidence'] or 0):.0%})"
            columns_[i % 4].image(thumb, caption=caption, width="stretch")


st.title("Batch")
state.show_flashes()
clf, problem = state.classifier()
state.model_notice(clf, problem)

source = st.radio("Photographs", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="batch_source")
if source == "upload":
    uploads = st.file_uploader("Photographs", type=UPLOAD_TYPES, accept_multiple_files=True,
                               key="batch_uploads", label_visibility="collapsed")
    ready = bool(uploads)
else:
    folder_name = st.text_input("Folder inside the data folder", key="batch_folder",
                                placeholder="e.g. screening/2025-06",
                                help="A folder on the server, relative to the data folder; searched recursively.")
    folder = None
    if folder_name.strip():
        folder, refusal = state.data_subfolder(folder_name)
        if refusal:
            st.error(refusal)
    ready = folder is not None
st.caption(f"Uses the Review page's method ({METHOD_LABELS.get(st.session_state.get('method', 'gradcam'))}), "
           "colormap and transparency.")

if st.button("Run batch", type="primary", icon=":material/play_arrow:", disabled=clf is None or not ready):
    assert clf is not None
    if source == "upload":
        with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
            files, names = _uploads_to_files(list(uploads), Path(tmp))
            st.session_state["batch_rows"] = _run(clf, files, names)
    else:
        assert folder is not None
        files = collect_inputs([folder])
        if not files:
            st.warning("The folder holds no photographs.")
        else:
            names = [str(f.relative_to(folder)) for f in files]
            st.session_state["batch_rows"] = _run(clf, files, names)

rows = st.session_state.get("batch_rows")
if rows:
    results(rows)
