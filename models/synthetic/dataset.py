"""Writing synthetic eye data sets (photographs, masks, labels.csv) and the preview grid of types and grades."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from components.base.files import atomic_write_bytes
from components.base.tables import write_csv
from components.screening.vocabulary import EYES
from models.synthetic.parameters import CATARACT_TYPES, MASK_NAMES
from models.synthetic.render import _check_size, render_eye

_PLAN_STREAM = 0x91A7  # the dataset plan's random stream, apart from the images' seeds


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # Fixed encoder settings and no metadata, so the same pixels always give the same bytes.
    Image.fromarray(image, "RGB").save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=False,
                                       progressive=False)
    return buf.getvalue()


def _encode_mask(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * np.uint8(255), "L").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def _image_seed(seed: int, index: int) -> int:
    """The seed of image ``index``: what ``SeedSequence(seed).spawn(n)[index]`` would give, as an int."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint32)[0])


def _dataset_plan(n: int, seed: int, cataract_fraction: float) -> list[tuple[str, str | None, int]]:
    """Label, type and grade for each index: an exact cataract count, types and grades balanced."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PLAN_STREAM]))
    n_cat = round(n * cataract_fraction)
    is_cat = np.zeros(n, bool)
    is_cat[rng.permutation(n)[:n_cat]] = True
    types = [CATARACT_TYPES[i % 4] for i in range(n_cat)]
    types = [types[i] for i in rng.permutation(n_cat)]
    # Per type, grades come from shuffled blocks; mature's 3s and 4s balance the others' 1s and 2s.
    blocks = {kind: [1, 1, 2, 2, 3, 4] for kind in CATARACT_TYPES[:3]}
    blocks["mature"] = [3, 4]
    queues: dict[str, list[int]] = {kind: [] for kind in CATARACT_TYPES}
    plan: list[tuple[str, str | None, int]] = []
    k = 0
    for i in range(n):
        if not is_cat[i]:
            plan.append(("normal", None, 0))
            continue
        kind = types[k]
        k += 1
        if not queues[kind]:
            queues[kind] = [int(g) for g in rng.permutation(blocks[kind])]
        plan.append(("cataract", kind, queues[kind].pop()))
    return plan


def generate_dataset(out_dir: str | Path, n: int, seed: int, *, cataract_fraction: float = 0.5,
                     size: tuple[int, int] = (512, 384),
                     progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Write ``n`` synthetic eye photographs, their masks and ``labels.csv`` under ``out_dir``.

    Layout: ``cataract/`` and ``normal/`` hold ``syn_<seed>_<index>.jpg``; ``masks/`` holds
    ``<stem>_<mask>.png`` (0/255) for each of MASK_NAMES; ``labels.csv`` has the columns
    file, label, type, grade, seed, eye, group. Consecutive pairs of images are the right (OD)
    and left (OS) eye of one synthetic patient and share its group. The same arguments give the
    same bytes in every file. Any image can be made again from its row:
    ``render_eye(seed, label=..., cataract_type=type or None, grade=..., eye=..., size=size,
    patient_seed=<seed of the group's OD row>)``. Returns the rows of ``labels.csv``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(cataract_fraction) <= 1.0:
        raise ValueError(f"cataract_fraction must be between 0 and 1, got {cataract_fraction!r}")
    _check_size(size)
    out = Path(out_dir)
    for sub in ("cataract", "normal", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for i, (label, kind, grade) in enumerate(_dataset_plan(int(n), int(seed), float(cataract_fraction))):
        image_seed = _image_seed(int(seed), i)
        # Both eyes of a patient take the patient from the seed of the right eye, the pair's first.
        eye = render_eye(image_seed, label=label, cataract_type=kind, grade=grade, eye=EYES[i % 2], size=size,
                         patient_seed=_image_seed(int(seed), i - i % 2))
        stem = f"syn_{seed}_{i:05d}"
        rel = f"{label}/{stem}.jpg"
        atomic_write_bytes(out / rel, _encode_jpeg(eye.image, eye.meta["jpeg_quality"]))
        for name in MASK_NAMES:
            atomic_write_bytes(out / "masks" / f"{stem}_{name}.png", _encode_mask(eye.masks[name]))
        rows.append({"file": rel, "label": label, "type": kind or "", "grade": grade, "seed": image_seed,
                     "eye": eye.meta["eye"], "group": f"syn_{seed}_p{i // 2:05d}"})
        if progress is not None:
            progress(i + 1, int(n))
    write_csv(out / "labels.csv", ["file", "label", "type", "grade", "seed", "eye", "group"], rows)
    return rows


# The preview's plan: each row shows two normal eyes and the four grades of one cataract type.
_PREVIEW_PLAN: tuple[tuple[str | None, int], ...] = tuple(
    item
    for kind, grades in (("nuclear", (1, 2, 3, 4)), ("cortical", (1, 2, 3, 4)),
                         ("posterior_subcapsular", (1, 2, 3, 4)), ("mature", (3, 4, 3, 4)))
    for item in ((None, 0), (None, 0), *((kind, g) for g in grades))
)
_SHORT = {"nuclear": "nuclear", "cortical": "cortical", "posterior_subcapsular": "PSC", "mature": "mature"}


def preview_grid(seeds: Sequence[int], path: str | Path, *, columns: int = 6, tile_width: int = 232,
                 size: tuple[int, int] = (512, 384)) -> np.ndarray:
    """Render one eye per seed, normal and each cataract type and grade in turn, as a labelled PNG grid."""
    if not seeds:
        raise ValueError("preview_grid needs at least one seed")
    if columns < 1 or tile_width < 32:
        raise ValueError(f"columns must be at least 1 and tile_width at least 32, got {columns} and {tile_width}")
    width, height = _check_size(size)
    tile_h = round(tile_width * height / width)
    rows_n = -(-len(seeds) // columns)
    grid = np.full((rows_n * tile_h, columns * tile_width, 3), 255, np.uint8)
    for k, seed in enumerate(seeds):
        kind, grade = _PREVIEW_PLAN[k % len(_PREVIEW_PLAN)]
        eye = render_eye(int(seed), label="normal" if kind is None else "cataract", cataract_type=kind, grade=grade,
                         size=(width, height))
        # Through JPEG, as the dataset stores them, then shrunk for the grid.
        jpeg = np.asarray(Image.open(io.BytesIO(_encode_jpeg(eye.image, eye.meta["jpeg_quality"]))).convert("RGB"))
        tile = cv2.resize(jpeg, (tile_width, tile_h), interpolation=cv2.INTER_AREA)
        text = "normal" if kind is None else f"{_SHORT[kind]} {grade}"
        for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(tile, text, (6, tile_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, thick, cv2.LINE_AA)
        r, c = divmod(k, columns)
        grid[r * tile_h:(r + 1) * tile_h, c * tile_width:(c + 1) * tile_width] = tile
    buf = io.BytesIO()
    Image.fromarray(grid, "RGB").save(buf, "PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return grid
