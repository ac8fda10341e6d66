"""The results of a batch, an audit or a comparison as the pages show them: figures, a table, downloads, pictures."""

from __future__ import annotations

from typing import Any

import streamlit as st

from components.workflows import runs
from components.workflows.audit import AuditRow
from dashboard.present import plain

_PERCENT = st.column_config.ProgressColumn


def _figures_ui(figures: list[tuple[str, str]]) -> None:
    for column, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(label, value)


def batch_results_ui(result: runs.BatchResult) -> None:
    """The batch's table with its CSV, then a gallery of overlays."""
    rows = result.rows
    table = runs.batch_table(rows)
    failed = sum(1 for r in rows if r["Error"])
    st.subheader(f"Results: {len(rows)} photographs" + (f", {failed} could not be read" if failed else ""))
    columns = {"Confidence": _PERCENT("Confidence", format="percent", min_value=0.0, max_value=1.0)}
    for key in table:
        if key.startswith("P("):
            columns[key] = st.column_config.NumberColumn(key, format="percent")
    st.dataframe(table, hide_index=True, width="stretch", column_config=columns)
    st.download_button("Download CSV", key="batch_csv", data=result.csv, file_name="summary.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    gallery = runs.batch_gallery(rows)
    if not gallery:
        return
    st.subheader("Gallery")
    limit = f"; the first {runs.BATCH_GALLERY_MAX} shown" if len(gallery) == runs.BATCH_GALLERY_MAX else ""
    st.caption(f"Overlays ({result.method}), highest confidence first{limit}")
    columns_ = st.columns(4)
    for i, (thumb, caption) in enumerate(gallery):
        columns_[i % 4].image(thumb, caption=plain(caption), width="stretch")  # a file name is the user's text


def _audit_gallery_ui(rows: list[AuditRow], gallery: list[tuple[str, list[str], bytes]]) -> None:
    flagged = sum(1 for r in rows if r.flags)
    if not flagged:
        st.success("No photograph was flagged.")
        return
    st.subheader("Flagged photographs")
    # Unreadable photographs are flagged but have no picture; the table lists them.
    shown = f"; {len(gallery)} of {flagged} shown" if flagged > len(gallery) else ""
    st.caption(f"Most suspect first{shown}.")
    # Two to a row, a row at a time, so the page reads (and a screen reader announces) in rank order.
    for start in range(0, len(gallery), 2):
        for column, (file, flags, jpeg) in zip(st.columns(2), gallery[start:start + 2], strict=False):
            with column:
                st.image(jpeg, width="stretch")
                # File names are the user's text: shown as plain text, never as Markdown.
                st.text(f"{file}\n{'; '.join(flags)}")


def audit_results_ui(result: runs.AuditResult) -> None:
    """The audit's figures, table and downloads, then the flagged photographs."""
    stats = result.summary
    st.subheader(f"Results: {stats['n']} photographs")
    st.caption(f"Model: {plain(result.model)}")
    _figures_ui(runs.audit_figures(stats))
    st.caption("Verdicts: " + " · ".join(f"{verdict} {count}" for verdict, count in stats["verdicts"].items()))
    st.dataframe(runs.audit_table(result.rows), hide_index=True, width="stretch", column_config={
        "Confidence": _PERCENT("Confidence", min_value=0.0, max_value=1.0, format="percent"),
        "P(label)": st.column_config.NumberColumn("P(label)", format="percent",
                                                  help="The model's probability for the photograph's label"),
    })
    csv_col, html_col = st.columns(2)
    csv_col.download_button("Download audit.csv", key="audit_csv", data=result.csv, file_name="audit.csv",
                            mime="text/csv", icon=":material/download:", on_click="ignore")
    html_col.download_button("Download the gallery (HTML)", key="audit_gallery", data=result.html,
                             file_name="audit_gallery.html", mime="text/html", icon=":material/download:",
                             on_click="ignore",
                             help="One file that opens in any browser, without a server.")
    _audit_gallery_ui(result.rows, result.gallery)


def compare_results_ui(result: runs.CompareResult) -> None:
    """Agreement and map similarity, the table of both models, one picture per photograph."""
    found: list[dict[str, Any]] = [r for r, _ in result.rows]
    st.subheader(f"Results: {len(found)} photographs")
    name_a, name_b = result.models
    st.text(f"Model A: {name_a}\nModel B: {name_b}")  # checkpoint names are shown as written
    _figures_ui(runs.compare_figures(found))
    st.dataframe(runs.compare_table(found), hide_index=True, width="stretch", column_config={
        "Confidence A": _PERCENT("Confidence A", min_value=0.0, max_value=1.0, format="percent"),
        "Confidence B": _PERCENT("Confidence B", min_value=0.0, max_value=1.0, format="percent"),
        "Spearman": st.column_config.NumberColumn("Spearman", format="%.3f",
                                                  help="Rank correlation of the two maps: 1 means the same order"),
        "Top 20% overlap": st.column_config.NumberColumn("Top 20% overlap", format="percent",
                                                         help="Share of map A's top 20% also in map B's top 20%"),
    })
    for r, picture in result.rows:
        if picture is not None:
            st.text(r["file"])  # the user's file name, as plain text
            st.image(picture, width="stretch")

