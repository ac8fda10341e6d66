"""One eye on the Review page: map settings, the model's result and decision, three panels, the attention badge."""

from __future__ import annotations

import streamlit as st

from components.explanation.cam import METHOD_LABELS, METHODS, ExplainError, Explanation
from components.explanation.outline import draw_region
from components.explanation.overlay import COLORMAPS, blend
from components.lens.attention import AttentionResult
from components.records import ExamRecord, RecordStore
from components.workflows import review as rs
from dashboard import resources, session
from dashboard.keys import EyeScope
from dashboard.present import attention_badge, decision_view, map_caption, plain
from models import Classifier

Explained = tuple[Explanation, rs.MapKey, AttentionResult | None]


def settings_ui(clf: Classifier) -> None:
    """The method, class, colormap and transparency pickers; they keep their values across pages."""
    if st.session_state["target"] not in (rs.PREDICTED, *clf.class_names):
        st.session_state["target"] = rs.PREDICTED  # the model changed under this setting
    method, target, colormap, alpha = st.columns([1.1, 1.1, 1, 1.6], vertical_alignment="bottom")
    method.selectbox("Method", list(METHODS), key="method", format_func=lambda m: METHOD_LABELS[m],
                     persist_state="session",
                     help="Changing the method computes a new map (the model runs once more).")
    target.selectbox("Explain class", [rs.PREDICTED, *clf.class_names], key="target",
                     format_func=lambda t: "Predicted class" if t == rs.PREDICTED else t,
                     persist_state="session",
                     help="Which class the map explains: the model's prediction, or a class you name.")
    colormap.selectbox("Colormap", COLORMAPS, key="colormap", persist_state="session")
    alpha.slider("Transparency", min_value=0.0, max_value=1.0, step=0.05, key="alpha",
                 persist_state="session",
                 help="Weight of the heatmap in the overlay: 0 shows the photograph only, 1 the heatmap only.")


def explain_ui(store: RecordStore, clf: Classifier, image: rs.ReviewImage, exam: ExamRecord | None,
               modality: str | None) -> Explained | None:
    """The map (from the cache, or computed under a spinner) and its attention check; None after an error."""
    chosen = st.session_state["target"]
    target = None if chosen == rs.PREDICTED else chosen
    try:
        with st.spinner("Computing the Grad-CAM map…"):
            explanation, ran = rs.explain_cached(resources.map_cache(), clf, image,
                                                 method=st.session_state["method"], target=target)
    except ExplainError as error:
        st.error(str(error))
        return None
    key = rs.map_key(image.sha256, clf, method=explanation.method, target=target)
    attention = resources.attention_cache().get((key, modality))
    if attention is None:
        # The check measures on a grid of at most 512 px, so the screen's copy gives the same figures.
        attention = rs.attention_for(image.display, explanation, modality)
        resources.attention_cache().put((key, modality), attention)
    if ran:
        rs.log_explanation(store, clf, image.sha256, explanation, exam_id=exam.id if exam is not None else None,
                           actor=session.actor(), attention=attention)
    return explanation, key, attention


def typicality_ui(clf: Classifier, image: rs.ReviewImage, explanation: Explanation | None = None) -> None:
    """A warning when the photograph is unlike the model's training photographs; a note when that is unknown."""
    result = rs.typicality_for(resources.typicality_cache(), clf, image, explanation)
    if result.unlike_training:
        st.warning(result.text, icon=":material/warning:")
    else:
        st.caption(result.text)


def result_ui(clf: Classifier, explanation: Explanation, attention: AttentionResult | None,
              modality: str | None, eye: str | None) -> None:
    """The model's probabilities, then the screening decision in the report's own words."""
    names = list(clf.class_names)
    columns = st.columns(2 + len(names))
    columns[0].metric("Prediction", explanation.prediction)
    columns[1].metric("Confidence", f"{explanation.confidence:.1%}")
    for column, name in zip(columns[2:], names, strict=True):
        column.metric(f"P({plain(name)})", f"{explanation.probabilities[name]:.1%}")  # a label renders Markdown
    decision = rs.eye_decision(clf, explanation, attention, modality=modality, eye=eye)
    if decision is not None and clf.positive_index is not None:
        view = decision_view(decision, names[clf.positive_index])
        st.markdown(view.headline)
        st.caption(view.detail)


def panels_ui(image: rs.ReviewImage, explanation: Explanation, key: rs.MapKey, scope: EyeScope,
              attention: AttentionResult | None = None) -> None:
    """Original, heatmap with its colour bar, overlay; a slider move redraws only the overlay.

    With "Show the region the check used" on, the overlay outlines the pupil and the iris the
    attention check measured against, so a finder that got it wrong shows at a glance.
    """
    colormap, alpha = st.session_state["colormap"], float(st.session_state["alpha"])
    display = image.display
    size = (display.shape[1], display.shape[0])
    # The heatmap depends on the map and the colormap only: a slider move reuses it, and
    # redraws just the overlay from the cached map; the model does not run.
    heat_key = (key, colormap, size)
    heat = resources.panel_cache().get(heat_key)
    if heat is None:
        panel = rs.heatmap_panel(explanation.cam, size, colormap)
        heat = (rs.jpeg_bytes(panel), panel.shape[1] / size[0])
        resources.panel_cache().put(heat_key, heat)
    heat_jpeg, heat_ratio = heat
    blended = blend(display, explanation.cam, alpha=alpha, colormap=colormap)
    if st.session_state.get(scope.key("show_region")) and attention is not None:
        blended = draw_region(blended, attention.region.as_dict())  # the check ran on this same display copy
    overlay = rs.jpeg_bytes(blended)
    method = METHOD_LABELS.get(explanation.method, explanation.method)
    # Column widths follow the pictures' widths, so the three come out the same height.
    original_col, heat_col, overlay_col = st.columns([1.0, heat_ratio, 1.0])
    original_col.image(image.display_jpeg, caption="Original", width="stretch")
    heat_col.image(heat_jpeg, caption=f"{method} Heatmap", width="stretch")
    overlay_col.image(overlay, caption="Overlay", width="stretch")
    st.caption(map_caption(explanation, image.original_size, colormap, alpha))
    st.toggle("Show the region the check used", key=scope.key("show_region"), value=False,
              help="Outline the pupil (green) and the iris (blue) that the attention check measured against.")


def attention_ui(attention: AttentionResult) -> None:
    """The attention badge with its figures, and a warning when the map lies off the lens."""
    badge = attention_badge(attention)
    badge_col, figures_col = st.columns([1, 4], vertical_alignment="center")
    with badge_col:
        st.badge(badge.text, color=badge.colour, icon=":material/center_focus_strong:")
    figures_col.caption(badge.figures)
    if badge.warning:
        st.warning(badge.warning, icon=":material/warning:")


def eye_ui(store: RecordStore, clf: Classifier | None, image: rs.ReviewImage, exam: ExamRecord | None,
           modality: str | None, eye: str | None, scope: EyeScope) -> tuple[Explanation | None, AttentionResult | None]:
    """One photograph: without a model the photograph alone, else the result, the panels and the check.

    Drawn once per eye on a patient's page: every widget here is keyed by ``scope``.
    """
    if clf is None:
        st.image(image.display_jpeg, caption="Original", width=480)
        return None, None
    explained = explain_ui(store, clf, image, exam, modality)
    if explained is None:
        return None, None
    explanation, key, attention = explained
    result_ui(clf, explanation, attention, modality, eye)
    typicality_ui(clf, image, explanation)
    panels_ui(image, explanation, key, scope, attention)
    if attention is not None:
        attention_ui(attention)
    return explanation, attention
