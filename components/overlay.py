"""Stable name for callers outside the project: ``components.overlay.blend`` and ``COLORMAPS`` (the
pictures are made in ``components.explanation.overlay``; code inside the project imports them from there)."""

from components.explanation.overlay import (
    COLORMAPS,
    OPENCV_COLORMAPS,
    blend,
    colorbar,
    colorize,
    fit_within,
    resize_map,
    three_panel,
)

__all__ = ["COLORMAPS", "OPENCV_COLORMAPS", "blend", "colorbar", "colorize", "fit_within", "resize_map",
           "three_panel"]
