"""Training data: labelled image folders, patient groups, the grouped split, augmentation, decoded sets."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from components.base.errors import CataractCamError
from components.base.tables import read_csv
from components.imaging.loading import IMAGE_EXTENSIONS, decode_image


class TrainError(CataractCamError, ValueError):
    """The training data or options cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: where it is (relative to the data folder), its class index and its group."""

    file: str
    label: int
    group: str


@dataclass
class LabelledFolder:
    """An image folder with one sub-folder per class, read once."""

    root: Path
    class_names: tuple[str, ...]
    samples: list[Sample]

    @property
    def has_masks(self) -> bool:
        return (self.root / "masks").is_dir()


def class_folder_name(name: str) -> str:
    """The class name a folder stands for: 'cataract' -> 'Cataract' (only the first letter changes)."""
    return name[:1].upper() + name[1:]


def read_folder(root: str | os.PathLike[str]) -> LabelledFolder:
    """Find classes (sub-folders, sorted) and images; groups come from labels.csv's ``group`` column if present."""
    root = Path(root)
    if not root.is_dir():
        raise TrainError("The data folder does not exist; expected a folder with one sub-folder per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name != "masks" and not p.name.startswith("."))
    per_class: list[list[Path]] = []
    names: list[str] = []
    for folder in folders:
        files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            names.append(class_folder_name(folder.name))
            per_class.append(files)
    if len(names) < 2:
        raise TrainError(
            f"The data folder has {len(names)} class sub-folder(s) with images; expected at least 2 "
            "(for example cataract/ and normal/)."
        )
    groups = _read_groups(root)
    samples = [
        Sample(rel, index, groups.get(rel, rel))
        for index, files in enumerate(per_class)
        for rel in (f.relative_to(root).as_posix() for f in files)
    ]
    return LabelledFolder(root=root, class_names=tuple(names), samples=samples)


def _read_groups(root: Path) -> dict[str, str]:
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    header, rows = read_csv(path)
    if "file" not in header or "group" not in header:
        return {}
    return {row["file"]: row["group"] for row in rows if row.get("file") and row.get("group")}


def split_samples(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Seeded train/validation split that keeps each group on one side and each class near ``val_fraction``.

    Groups are visited in a seeded order and go to validation while that keeps every class's
    validation count within its target, so a patient's two eyes never straddle the split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise TrainError(f"The validation fraction must lie between 0 and 1, got {val_fraction}.")
    by_group: dict[str, list[Sample]] = {}
    for s in samples:
        by_group.setdefault(s.group, []).append(s)
    classes = sorted({s.label for s in samples})
    target = {c: round(val_fraction * sum(s.label == c for s in samples)) for c in classes}
    order = sorted(by_group)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    val_count = dict.fromkeys(classes, 0)
    train, val = [], []
    for g in order:
        members = by_group[g]
        need = {c: sum(s.label == c for s in members) for c in classes}
        if all(val_count[c] + need[c] <= max(target[c], 1) for c in classes) and any(need[c] for c in classes):
            val.extend(members)
            for c in classes:
                val_count[c] += need[c]
        else:
            train.extend(members)
    missing = [c for c in classes if not any(s.label == c for s in val) or not any(s.label == c for s in train)]
    if missing:
        raise TrainError(
            "Too few images or groups to put every class in both training and validation; add images "
            "or pass a validation folder."
        )
    return train, val



# ------------------------------------------------------------------------------------------
# Images and augmentation.
# ------------------------------------------------------------------------------------------


def load_image(root: Path, sample: Sample, min_side: int) -> np.ndarray:
    """Decode one image exactly as inference does (JPEG draft decoding down to ``min_side``)."""
    return decode_image(root / sample.file, min_side=min_side).pixels


def pupil_mask(root: Path, sample: Sample, image_shape: tuple[int, int]) -> np.ndarray | None:
    """The pupil mask (uint8, 255 inside) from ``masks/<stem>_pupil.png`` at the image's size, if there is one."""
    path = root / "masks" / f"{Path(sample.file).stem}_pupil.png"
    if not path.is_file():
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None or not mask.any():
        return None
    if mask.shape != image_shape:
        mask = cv2.resize(mask, (image_shape[1], image_shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of a mask's pixels."""
    ys, xs = np.nonzero(mask > 127)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def augment(image: np.ndarray, rng: np.random.Generator,
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A plausible other photograph of the same eye: mirror (OD <-> OS), crop, tilt, light, colour, focus.

    Crops keep at least 80% of each side and, where the pupil mask is known, the whole pupil, so a
    cataract never leaves the frame; without a mask the crop stays near the centre. The mask
    goes through the same geometry and comes back with the image.
    """
    h, w = image.shape[:2]
    out = image
    box = mask_box(mask) if mask is not None else None
    if rng.uniform() < 0.5:
        out = out[:, ::-1]
        if mask is not None:
            mask = mask[:, ::-1]
            box = mask_box(mask)
    scale = rng.uniform(0.8, 1.0)
    cw, ch = round(w * scale), round(h * scale * rng.uniform(0.95, 1.05))
    ch = min(ch, h)
    if box is not None:
        lo_x, hi_x = max(0.0, box[2] - cw), min(float(w - cw), box[0])
        lo_y, hi_y = max(0.0, box[3] - ch), min(float(h - ch), box[1])
    else:
        lo_x, hi_x = (w - cw) * 0.25, (w - cw) * 0.75
        lo_y, hi_y = (h - ch) * 0.25, (h - ch) * 0.75
    if hi_x < lo_x:
        lo_x = hi_x = (w - cw) / 2
    if hi_y < lo_y:
        lo_y = hi_y = (h - ch) / 2
    x0, y0 = int(rng.uniform(lo_x, hi_x)), int(rng.uniform(lo_y, hi_y))
    angle = rng.uniform(-10, 10)
    # One affine warp does crop and rotation together, about the crop's centre.
    centre = (x0 + cw / 2, y0 + ch / 2)
    m = cv2.getRotationMatrix2D(centre, angle, 1.0)
    m[:, 2] += (cw / 2 - centre[0], ch / 2 - centre[1])
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (cw, ch), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    if mask is not None:
        mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (cw, ch), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    f = out.astype(np.float32)
    f *= rng.uniform(0.8, 1.2)  # exposure
    mean = f.mean()
    f = (f - mean) * rng.uniform(0.8, 1.2) + mean  # contrast
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.8, 1.2)  # saturation
    f *= rng.uniform(0.94, 1.06, size=3).astype(np.float32)  # white balance
    if rng.uniform() < 0.3:
        f = cv2.GaussianBlur(f, (0, 0), sigmaX=rng.uniform(0.3, 1.2) * max(w, h) / 512)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8), mask


class DecodedSet:
    """Decoded images held in memory once, so each epoch only augments and preprocesses."""

    def __init__(self, folder: LabelledFolder, samples: Sequence[Sample], min_side: int, use_masks: bool,
                 progress: Callable[[str], Any] | None = None) -> None:
        self.samples = list(samples)
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []
        iterator: Any = self.samples
        if progress is not None:
            iterator = progress("decoding")(self.samples)
        for s in iterator:
            img = load_image(folder.root, s, min_side)
            self.images.append(img)
            self.masks.append(pupil_mask(folder.root, s, img.shape[:2]) if use_masks else None)
        self.labels = torch.tensor([s.label for s in self.samples], dtype=torch.long)

