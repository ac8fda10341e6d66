"""Batch: many photographs through the engine path of `cataract-cam batch`; a table, a gallery and a CSV."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from components.cluster.runs import batch_run_on_cluster
from components.explanation.cam import METHOD_LABELS
from components.records import data_dir
from components.records.errors import storage_error
from components.workflows import runs
from components.workflows.batch import collect_inputs
from dashboard import folders, resources, session
from dashboard.widgets.inputs import cluster_ui, progress_ui
from dashboard.widgets.page import open_page
from dashboard.widgets.results import batch_results_ui

SOURCES = {"upload": "Upload photographs", "folder": "A folder in the data folder"}

clf = open_page("Batch")

source = st.radio("Photographs", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="batch_source")
uploads, folder = [], None
if source == "upload":
    uploads = st.file_uploader("Photographs", type=folders.UPLOAD_TYPES, accept_multiple_files=True,
                               key="batch_uploads", label_visibility="collapsed") or []
else:
    folder_name = st.text_input("Folder inside the data folder", key="batch_folder",
                                placeholder="e.g. screening/2025-06",
                                help="A folder on the server, relative to the data folder; searched recursively.")
    if folder_name.strip():
        folder, refusal = folders.data_subfolder(folder_name)
        if refusal:
            st.error(refusal)
client = cluster_ui(resources.cluster())
look = session.look()
st.caption(f"Uses the Review page's method ({METHOD_LABELS.get(look.method)}), colormap and transparency.")

too_many = folders.too_many_uploads(len(uploads))
if too_many:
    st.error(too_many)
ready = bool(uploads) and not too_many if source == "upload" else folder is not None
if st.button("Run batch", key="batch_run", type="primary", icon=":material/play_arrow:",
             disabled=clf is None or not ready):
    assert clf is not None
    try:
        with tempfile.TemporaryDirectory(dir=data_dir()) as tmp:
            if folder is None:
                files, names = folders.uploads_to_files(uploads, Path(tmp))
            else:
                files, names, outside = folders.confined_files(folder, collect_inputs([folder]))
                if outside:
                    st.warning(folders.LEFT_OUT.format(n=outside))
            if not files:
                st.warning("The folder holds no photographs.")
            elif folders.too_many_files(len(files)):
                st.error(folders.too_many_files(len(files)))
            else:
                bar, progress = progress_ui(f"Explaining {len(files)} photographs…")
                model = session.model_source()
                if client is not None and model is not None:
                    ran = batch_run_on_cluster(client, model, clf, files, names, look, progress)
                else:
                    ran = runs.batch_run(clf, files, names, look, progress)
                st.session_state["batch_result"] = ran
                bar.empty()
    except OSError as error:  # the uploads' copies and the CSV go to the data folder: full or read-only
        st.error(str(storage_error(error)))

result = st.session_state.get("batch_result")
if result is not None:
    batch_results_ui(result)
