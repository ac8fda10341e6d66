"""Inputs the Batch, Audit and Compare pages share: the modality picker, a progress bar, the cluster a run uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from components.screening.vocabulary import ATTENTION_MODALITIES, MODALITY_LABELS
from components.workflows.runs import Progress

if TYPE_CHECKING:
    from dashboard.resources import Cluster

DETECT = "detect"  # the modality choice that lets the attention check tell per photograph


def modality_ui(key: str, help: str | None = None) -> str | None:
    """Where the attention should lie for the whole set: "external", "fundus", or None to tell per photograph."""
    chosen = st.selectbox("Modality", [DETECT, *ATTENTION_MODALITIES], key=key, help=help,
                          format_func=lambda m: "Tell per photograph" if m == DETECT else MODALITY_LABELS[m])
    return None if chosen == DETECT else chosen


def progress_ui(text: str) -> tuple[DeltaGenerator, Progress]:
    """A progress bar and the callback that moves it; empty the bar when the run is over."""
    bar = st.progress(0.0, text=text)

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Explained {done} of {total}")

    return bar, progress


def cluster_ui(cluster: Cluster | None) -> Any:
    """Where the run goes: the Dask cluster's client (its workers listed), or None to run here."""
    if cluster is None:
        return None
    if cluster.problem:
        st.error(f"The Dask cluster cannot be used, so the batch runs here: {cluster.problem}")
        return None
    from components.cluster.batch import describe_workers

    workers = describe_workers(cluster.client)
    with st.expander(f"Runs on the Dask cluster at {cluster.address}: {len(workers)} workers"):
        st.dataframe(workers, hide_index=True)
    return cluster.client
