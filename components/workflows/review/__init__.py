"""What the review screen needs from the engine, without Streamlit, one concern a module.

``images`` holds a photograph's display copy and full pixels, ``analysis`` its map, attention
check, typicality and decision, ``case`` the patient's report inputs, PDF, reviews and saved
photographs. The dashboard imports this package as ``rs``; the byte-bounded cache they share is
``components.base.cache.BoundedCache``.
"""

from components.base.cache import BoundedCache, held_bytes
from components.workflows.review.analysis import (
    PREDICTED,
    MapKey,
    analysis_matches,
    attention_for,
    explain_cached,
    eye_decision,
    guess_modality,
    log_explanation,
    map_key,
    record_analysis,
    typicality_for,
)
from components.workflows.review.case import (
    EyeReport,
    anonymous_id,
    case_report,
    export_report,
    eye_findings,
    patient_info,
    review_info,
    review_status,
    save_photo,
    save_review,
    stored_report,
)
from components.workflows.review.images import (
    DISPLAY_MAX_SIDE,
    RECENT_FULL_BYTES,
    REVIEW_MIN_SIDE,
    HeldUpload,
    ReviewImage,
    downscale,
    heatmap_panel,
    image_from_pixels,
    image_from_upload,
    jpeg_bytes,
    reattached,
)

__all__ = [
    "DISPLAY_MAX_SIDE", "PREDICTED", "RECENT_FULL_BYTES", "REVIEW_MIN_SIDE", "BoundedCache", "EyeReport",
    "HeldUpload", "MapKey", "ReviewImage", "analysis_matches", "anonymous_id", "attention_for", "case_report",
    "downscale", "explain_cached", "export_report", "eye_decision", "eye_findings", "guess_modality", "heatmap_panel",
    "held_bytes", "image_from_pixels", "image_from_upload", "jpeg_bytes", "log_explanation", "map_key",
    "patient_info", "reattached", "record_analysis", "review_info", "review_status", "save_photo", "save_review",
    "stored_report", "typicality_for",
]
