"""The cataract classifier: architecture, checkpoints, training, evaluation and synthetic eyes."""

from models.classifier import (
    DEFAULT_CLASS_NAMES,
    DEFAULT_TARGET_LAYER,
    DEMO_MODEL_PATH,
    CheckpointError,
    Classifier,
    build_model,
    load_classifier,
    load_classifier_bytes,
    save_checkpoint,
)

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "DEFAULT_TARGET_LAYER",
    "DEMO_MODEL_PATH",
    "CheckpointError",
    "Classifier",
    "build_model",
    "load_classifier",
    "load_classifier_bytes",
    "save_checkpoint",
]
