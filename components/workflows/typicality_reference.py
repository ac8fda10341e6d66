"""Typicality statistics for an existing checkpoint, from a folder of its training photographs, into its sidecar JSON.

A checkpoint trained elsewhere (a user's ``best_model.pth``) carries no statistics of its
training photographs. Given a folder of them (one sub-folder per class, as ``train`` reads, or
just photographs), this fits the statistics on one part and sets the threshold on the other part,
split the way ``train`` splits (by group when ``labels.csv`` names groups, seeded), and writes
them under ``"typicality"`` in the checkpoint's sidecar ``<checkpoint>.json``, which
``load_classifier`` reads.

    cataract-cam typicality --model best_model.pt --reference DATA/
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.base.files import atomic_write_bytes
from components.imaging.loading import IMAGE_EXTENSIONS, ImageError, decode_image
from components.typicality.score import DEFAULT_RATE, TypicalityStats, fit_typicality, stats_to_payload
from models.classifier import Classifier, load_classifier
from models.training.data import TrainError, read_folder, split_samples

__all__ = ["ReferenceSet", "compute_for_checkpoint", "read_reference", "sidecar_path", "write_sidecar"]


@dataclass
class ReferenceSet:
    """Reference photographs split into a fitting part (with class labels, or None) and a held-out part."""

    fit: list[np.ndarray]
    labels: list[int] | None
    heldout: list[np.ndarray]
    skipped: int  # files that could not be decoded


def _decode(path: Path, min_side: int) -> np.ndarray | None:
    try:
        return decode_image(path, min_side=min_side).pixels
    except (ImageError, OSError, ValueError):
        return None


def read_reference(folder: str | os.PathLike[str], classifier: Classifier, *, heldout_fraction: float = 0.2,
                   seed: int = 0) -> ReferenceSet:
    """Decode and split a reference folder; a file that cannot be decoded is skipped and counted.

    Class sub-folders whose names are the classifier's classes give the labels; otherwise every
    photograph under the folder is used without labels (the model's predictions stand in).

    Raises:
        TypeError: ``classifier`` is not a Classifier.
        ValueError: the folder does not exist, ``heldout_fraction`` is outside (0, 1), or fewer than
            8 photographs fall on either side of the split.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"Expected a models.Classifier, got {type(classifier).__name__}.")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"The held-out fraction must lie between 0 and 1, got {heldout_fraction}.")
    root = Path(folder)
    if not root.is_dir():
        raise ValueError("The reference folder does not exist; expected a folder of training photographs.")
    names = [c.lower() for c in classifier.class_names]
    labelled = None
    with contextlib.suppress(TrainError):  # no class sub-folders: the photographs go unlabelled
        labelled = read_folder(root)
    size = classifier.input_size
    if labelled is not None and [c.lower() for c in labelled.class_names] == names:
        train, held = split_samples(labelled.samples, heldout_fraction, seed)
        fit = [(_decode(root / s.file, size), s.label) for s in train]
        heldout = [_decode(root / s.file, size) for s in held]
        kept = [(img, label) for img, label in fit if img is not None]
        ref = ReferenceSet([img for img, _ in kept], [label for _, label in kept],
                           [img for img in heldout if img is not None], 0)
    else:
        files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        order = np.random.default_rng(seed).permutation(len(files))
        n_held = round(heldout_fraction * len(files))
        decoded = [_decode(files[i], size) for i in order]
        ref = ReferenceSet([img for img in decoded[n_held:] if img is not None], None,
                           [img for img in decoded[:n_held] if img is not None], 0)
        heldout = decoded[:n_held]
        fit = [(img, 0) for img in decoded[n_held:]]
    ref.skipped = sum(img is None for img, _ in fit) + sum(img is None for img in heldout)
    if len(ref.fit) < 8 or len(ref.heldout) < 8:
        raise ValueError(f"The reference folder gave {len(ref.fit)} photographs to fit and {len(ref.heldout)} "
                         "to hold out; at least 8 of each are needed (a few hundred make a steadier threshold).")
    return ref


def sidecar_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The sidecar JSON ``load_classifier`` reads for a checkpoint: an existing one, else ``<stem>.json``."""
    path = Path(checkpoint)
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            return candidate
    return path.with_suffix(".json")


def write_sidecar(checkpoint: str | os.PathLike[str], stats: TypicalityStats) -> Path:
    """Put the statistics under ``"typicality"`` in the checkpoint's sidecar JSON, keeping its other keys.

    Raises:
        TypeError: ``stats`` is not TypicalityStats.
        ValueError: an existing sidecar is not a JSON object.
    """
    if not isinstance(stats, TypicalityStats):
        raise TypeError(f"Expected TypicalityStats, got {type(stats).__name__}.")
    path = sidecar_path(checkpoint)
    card: dict[str, object] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValueError(f"The model card {path.name} beside the checkpoint is not valid JSON.") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"The model card {path.name} beside the checkpoint is not a JSON object.")
        card = loaded
    card["typicality"] = stats_to_payload(stats, tensors=False)
    atomic_write_bytes(path, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return path


def compute_for_checkpoint(checkpoint: str | os.PathLike[str], reference: str | os.PathLike[str], *,
                           heldout_fraction: float = 0.2, seed: int = 0, rate: float = DEFAULT_RATE
                           ) -> TypicalityStats:
    """Fit statistics for ``checkpoint`` from the ``reference`` folder and write them to its sidecar JSON.

    Raises:
        CheckpointError: the checkpoint cannot be loaded.
        ValueError: the folder or the options cannot be used (see :func:`read_reference`).
    """
    classifier = load_classifier(checkpoint)
    ref = read_reference(reference, classifier, heldout_fraction=heldout_fraction, seed=seed)
    stats = fit_typicality(classifier, ref.fit, ref.heldout, labels=ref.labels, rate=rate)
    stats.info.update(skipped=ref.skipped, split_seed=seed, heldout_fraction=heldout_fraction)
    write_sidecar(checkpoint, stats)
    return stats
