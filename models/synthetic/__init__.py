"""Synthetic close-up external eye photographs, with exact structure masks, for the demonstration model.

One seed gives one photograph, the same bytes on every machine. The package draws the patient and
the scene (:mod:`.parameters`), paints slowly varying fields at low resolution (:mod:`.fields`), the
iris texture (:mod:`.iris`), lens opacities (:mod:`.opacity`) and drawn strokes (:mod:`.strokes`),
composes them with the camera's response (:mod:`.compose`), and renders (:mod:`.render`) or writes
whole data sets (:mod:`.dataset`). ``python -m models.synthetic`` regenerates the preview image.
"""

from models.synthetic.dataset import generate_dataset, preview_grid
from models.synthetic.parameters import (
    CATARACT_TYPES,
    GENERATOR_VERSION,
    LABELS,
    MASK_NAMES,
    SyntheticEye,
)
from models.synthetic.render import render_eye

__all__ = [
    "CATARACT_TYPES",
    "GENERATOR_VERSION",
    "LABELS",
    "MASK_NAMES",
    "SyntheticEye",
    "generate_dataset",
    "preview_grid",
    "render_eye",
]
