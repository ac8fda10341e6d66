"""Audit: a labelled set of photographs as `cataract-cam audit` checks it: suspect labels, attention off the lens."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from components.records import data_dir
from components.records.errors import storage_error
from components.workflows import runs
from components.workflows.audit import AuditError, read_labelled_folder
from dashboard import folders, session
from dashboard.keys import widget_key
from dashboard.widgets.inputs import modality_ui, progress_ui
from dashboard.widgets.page import open_page
from dashboard.widgets.results import audit_results_ui

SOURCES = {"upload": "Upload photographs, one box per label", "folder": "A folder in the data folder"}

clf = open_page("Audit")
st.caption("Checks a labelled set of photographs: where the model confidently disagrees with the label "
           "(suspect label), where its attention lies off the lens, and which photographs cannot be graded.")

source = st.radio("Photographs", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="audit_source")
uploads: list[tuple[str, list[Any]]] = []
folder: Path | None = None
if source == "upload" and clf is not None:
    for i, (box, name) in enumerate(zip(st.columns(len(clf.class_names)), clf.class_names, strict=True)):
        files = box.file_uploader(f"Labelled {name}", type=folders.UPLOAD_TYPES, accept_multiple_files=True,
                                  key=widget_key("audit_upload", label=i))
        uploads.append((name, list(files or [])))
elif source == "folder":
    folder_name = st.text_input("Folder inside the data folder", key="audit_folder",
                                placeholder="e.g. audits/set1",
                                help="One sub-folder per label (for example cataract/ and normal/), "
                                     "and optionally masks/ with <name>_pupil.png for each photograph.")
    if folder_name.strip():
        folder, refusal = folders.data_subfolder(folder_name)
        if refusal:
            st.error(refusal)
modality = modality_ui("audit_modality", help="Where the attention should lie: the lens in an external or "
                       "slit-lamp photograph, the fundus field in a fundus photograph.")
st.caption("Uses the Review page's method, colormap and transparency.")

too_many = folders.too_many_uploads(sum(len(files) for _, files in uploads))
if too_many:
    st.error(too_many)
ready = any(files for _, files in uploads) and not too_many if source == "upload" else folder is not None
if st.button("Run audit", key="audit_run", type="primary", icon=":material/play_arrow:",
             disabled=clf is None or not ready):
    assert clf is not None
    bar, progress = progress_ui("Auditing the photographs…")
    try:
        with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
            outside = 0
            if folder is None:
                items = folders.uploads_to_items(uploads, Path(tmp))
            else:
                items, outside = folders.confined_items(read_labelled_folder(folder))
            if outside:
                st.warning(folders.LEFT_OUT.format(n=outside))
            too_many_files = folders.too_many_files(len(items))
            if too_many_files:
                st.error(too_many_files)
            else:
                st.session_state["audit_result"] = runs.audit_run(clf, items, modality, session.look(), progress)
    except AuditError as error:
        st.error(str(error))
    except OSError as error:  # the uploads' copies and the results go to the data folder: full or read-only
        st.error(str(storage_error(error)))
    bar.empty()

result = st.session_state.get("audit_result")
if result is not None:
    audit_results_ui(result)
