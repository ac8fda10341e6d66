"""Inputs the Batch, Audit and Compare pages share: the modality picker and a progress bar for a run."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from components.vocabulary import ATTENTION_MODALITIES, MODALITY_LABELS
from dashboard.runs import Progress

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
