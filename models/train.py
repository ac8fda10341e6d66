"""Training an EfficientNet-B0 cataract classifier on a labelled image folder, resumably, on a CPU if need be."""

from __future__ import annotations

import csv
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from components.imaging import IMAGE_EXTENSIONS, decode_image
from models.classifier import (
    DEFAULT_INPUT_SIZE,
    POSITIVE_CLASS,
    CheckpointError,
    Classifier,
    build_model,
    default_head,
    load_classifier,
    save_checkpoint,
)

RESUME_FORMAT = "cataract-cam-train-state/1"
THRESHOLD_RULES = ("youden", "sens95")


class TrainError(ValueError):
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


@dataclass
class TrainConfig:
    """Everything that decides what a training run does; stored in the checkpoint for the record."""

    epochs: int = 12
    batch_size: int = 24
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    val_fraction: float = 0.2
    seed: int = 0
    input_size: int = DEFAULT_INPUT_SIZE
    warmup_size: int | None = None  # a smaller input for the first epochs (progressive resizing)
    warmup_size_epochs: int = 0
    patience: int = 4
    init: str = "scratch"
    threshold_rule: str = "youden"
    calibrate: bool = True
    threads: int | None = None
    augment: bool = True
    max_minutes: float | None = None
    attention_weight: float = 0.0  # pupil-attention guidance (needs masks/); 0 turns it off


@dataclass
class TrainResult:
    """What a finished run produced."""

    checkpoint: Path
    sha256: str
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    temperature: float
    threshold: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)


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
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "file" not in reader.fieldnames or "group" not in reader.fieldnames:
            return {}
        return {row["file"]: row["group"] for row in reader if row.get("file") and row.get("group")}


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


# ------------------------------------------------------------------------------------------
# Calibration and threshold.
# ------------------------------------------------------------------------------------------


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T minimising validation NLL of softmax(logits / T), by golden-section search on log T."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(logits / math.exp(log_t), labels))

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))


def fold_temperature(model: nn.Module, temperature: float) -> None:
    """Divide the last Linear layer's weights and bias by T, so the plain model outputs logits / T."""
    last = model.classifier[-1] if isinstance(model.classifier, nn.Sequential) else model.classifier
    if not isinstance(last, nn.Linear):
        raise TrainError("The head does not end in a Linear layer, so the temperature cannot be folded into it.")
    with torch.no_grad():
        last.weight.div_(temperature)
        last.bias.div_(temperature)


def choose_threshold(scores: np.ndarray, positives: np.ndarray, rule: str = "youden") -> float:
    """Operating threshold on p(positive): a case is positive when its score is >= the threshold.

    ``youden`` maximises sensitivity + specificity - 1; ``sens95`` takes the highest threshold whose
    sensitivity is at least 0.95 (so the best specificity that keeps it). Ties (a plateau of
    equally good thresholds) resolve to the middle of the plateau, as far from both classes as the
    data allow. Candidates lie halfway between neighbouring distinct scores.
    """
    if rule not in THRESHOLD_RULES:
        raise TrainError(f"Unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}.")
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if positives.all() or not positives.any():
        raise TrainError("Choosing a threshold needs validation images of both classes.")
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] / 2], (distinct[1:] + distinct[:-1]) / 2, [(distinct[-1] + 1) / 2]])
    sens = np.array([(scores[positives] >= t).mean() for t in candidates])
    spec = np.array([(scores[~positives] < t).mean() for t in candidates])
    if rule == "youden":
        value = sens + spec
        best = np.flatnonzero(np.isclose(value, value.max()))
    else:
        ok = np.flatnonzero(sens >= 0.95)
        best_spec = spec[ok].max()
        best = ok[np.isclose(spec[ok], best_spec)]
    # The plateau's middle, in score space.
    return float((candidates[best[0]] + candidates[best[-1]]) / 2)


# ------------------------------------------------------------------------------------------
# The run.
# ------------------------------------------------------------------------------------------


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _initial_model(init: str, num_classes: int) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """The starting model, its head spec, and the card of the checkpoint it came from (empty otherwise)."""
    head = default_head(num_classes)
    if init == "scratch":
        return build_model(head), head, {}
    if init == "imagenet":
        from torchvision.models import EfficientNet_B0_Weights

        weights = EfficientNet_B0_Weights.IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.is_file():
            raise TrainError(
                "ImageNet weights for EfficientNet-B0 are not in the local torch cache and cannot be "
                "downloaded offline; use --init scratch or --init CHECKPOINT."
            )
        state = torch.load(cached, map_location="cpu", weights_only=True)
        model = build_model(head)
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        model.load_state_dict(state, strict=False)
        return model, head, {}
    try:
        start = load_classifier(init)
    except CheckpointError as exc:
        raise TrainError(f"--init checkpoint cannot be used: {exc}") from None
    n_out = start.model.classifier[-1].out_features if isinstance(start.model.classifier, nn.Sequential) \
        else start.model.classifier.out_features
    if n_out != num_classes:
        model = build_model(head)
        backbone = {k: v for k, v in start.model.state_dict().items() if not k.startswith("classifier.")}
        model.load_state_dict(backbone, strict=False)
        return model, head, dict(start.card)
    return start.model, start.head or head, dict(start.card)


class _Batches:
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


def _pupil_share_grid(mask: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    """Share of each feature-map cell covered by the pupil (all ones without a mask: no penalty)."""
    if mask is None:
        return np.ones(grid, np.float32)
    return cv2.resize((mask > 127).astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def _guided_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    masks: Sequence[np.ndarray | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and the mean share of the true class's positive evidence that lies outside the pupil.

    For EfficientNet (features -> average pool -> head ending in a Linear layer) the true class's
    evidence at each cell of the last feature map is its features dotted with that class's
    weights: the class activation map, which Grad-CAM at ``features.8`` reproduces exactly. The
    penalty is the share of its positive part outside the pupil, so the model is taught to build
    its decision from the lens rather than from wherever its features happen to spread.
    """
    features = model.features(x)
    logits = model.classifier(torch.flatten(model.avgpool(features), 1))
    last = model.classifier[-1] if isinstance(model.classifier, nn.Sequential) else model.classifier
    cam = torch.einsum("bchw,bc->bhw", features, last.weight[y]).clamp(min=0)
    grid = tuple(features.shape[2:])
    pupil = torch.from_numpy(np.stack([_pupil_share_grid(m, grid) for m in masks]))
    outside = (cam * (1 - pupil)).sum((1, 2)) / (cam.sum((1, 2)) + 1e-6)
    return logits, outside.mean()


def _evaluate_logits(clf: Classifier, data: _Batches, batch_size: int) -> torch.Tensor:
    clf.model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(data.images), batch_size):
            x = clf.preprocess(data.images[i:i + batch_size])
            out.append(clf.model(x).float())
    return torch.cat(out)


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".last.pt") if out.suffix != ".pt" else out.with_suffix(".last.pt")


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import io

    from components.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], config: TrainConfig | None = None, *,
          val_data: str | os.PathLike[str] | None = None, resume: bool = False,
          card: dict[str, Any] | None = None, progress: bool = True) -> TrainResult:
    """Train, calibrate, choose the threshold on validation data and write the checkpoint with its card.

    Each finished epoch writes ``<out>.last.pt`` (weights, optimizer, schedule position, best
    weights so far, history), so ``resume=True`` continues from the last finished epoch.
    """
    cfg = config or TrainConfig()
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError(f"Epochs and batch size must be at least 1, got {cfg.epochs} and {cfg.batch_size}.")
    if cfg.input_size < 32:
        raise TrainError(f"The input size must be at least 32 pixels, got {cfg.input_size}.")
    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise TrainError(f"Unknown threshold rule {cfg.threshold_rule!r}; "
                         f"expected one of {', '.join(THRESHOLD_RULES)}.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    started = time.monotonic()
    cpu_started = time.process_time()
    folder = read_folder(data)
    if val_data is not None:
        val_folder = read_folder(val_data)
        if val_folder.class_names != folder.class_names:
            raise TrainError("The validation folder's classes differ from the training folder's.")
        train_samples, val_samples = folder.samples, val_folder.samples
    else:
        val_folder = folder
        train_samples, val_samples = split_samples(folder.samples, cfg.val_fraction, cfg.seed)
    if POSITIVE_CLASS not in folder.class_names:
        raise TrainError(f"The data folder has no {POSITIVE_CLASS.lower()}/ sub-folder; expected one.")
    positive = folder.class_names.index(POSITIVE_CLASS)

    bar_factory = None
    if progress:
        from tqdm import tqdm

        def bar_factory(desc: str) -> Callable[[Any], Any]:
            return lambda it: tqdm(it, desc=desc, unit="image", file=sys.stderr, leave=False, disable=None)

    torch.manual_seed(cfg.seed)
    model, head, init_card = _initial_model(cfg.init, len(folder.class_names))
    model = model.to(memory_format=torch.channels_last)
    clf = Classifier(model=model, class_names=folder.class_names, input_size=cfg.input_size, head=head)
    min_side = cfg.input_size
    if cfg.attention_weight > 0 and not folder.has_masks:
        raise TrainError("Attention guidance needs pupil masks in DATA/masks/; none were found.")
    train_set = _Batches(folder, train_samples, min_side, folder.has_masks, bar_factory)
    val_set = _Batches(val_folder, val_samples, min_side, False, bar_factory)

    counts = torch.bincount(train_set.labels, minlength=len(folder.class_names)).double()
    class_weights = (counts.sum() / (len(counts) * counts.clamp(min=1))).float()
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set.samples) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup_fraction * total_steps))

    state: dict[str, Any] = {"epoch": 0, "step": 0, "best_val_loss": float("inf"), "best_epoch": 0,
                             "bad_epochs": 0, "history": [], "best_state": None, "elapsed": 0.0}
    resume_file = _resume_path(out)
    if resume and resume_file.is_file():
        saved = torch.load(resume_file, map_location="cpu", weights_only=True)
        if saved.get("format") != RESUME_FORMAT:
            raise TrainError("The resume file is not a training state written by this program.")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.update({k: saved[k] for k in ("epoch", "best_val_loss", "best_epoch", "bad_epochs", "history",
                                            "best_state", "elapsed")})
        state["step"] = int(saved["scheduler"]["step"])

    val_loss_fn = nn.CrossEntropyLoss()
    run_start = time.monotonic() - float(state["elapsed"])
    while state["epoch"] < cfg.epochs and state["bad_epochs"] < cfg.patience:
        epoch = int(state["epoch"])
        size = cfg.warmup_size if cfg.warmup_size and epoch < cfg.warmup_size_epochs else cfg.input_size
        train_clf = Classifier(model=model, class_names=folder.class_names, input_size=size, head=head)
        # Each epoch's randomness comes from (seed, epoch), so a resumed run repeats the same epochs.
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(len(train_set.samples))
        model.train()
        running, seen = 0.0, 0
        batches = range(0, len(order), cfg.batch_size)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="image", file=sys.stderr,
                       disable=None)
        for start in batches:
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            pairs = [augment(train_set.images[i], rng, train_set.masks[i]) if cfg.augment
                     else (train_set.images[i], train_set.masks[i]) for i in idx]
            x = train_clf.preprocess([p[0] for p in pairs])
            y = train_set.labels[idx]
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(int(state["step"]), total_steps, warmup, cfg.lr)
            optimizer.zero_grad(set_to_none=True)
            if cfg.attention_weight > 0:
                logits, outside = _guided_forward(model, x, y, [p[1] for p in pairs])
                loss = loss_fn(logits, y) + cfg.attention_weight * outside
            else:
                loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            state["step"] = int(state["step"]) + 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(len(idx))
                bar.set_postfix(loss=f"{running / seen:.3f}")
        if bar is not None:
            bar.close()
        logits = _evaluate_logits(clf, val_set, 64)
        val_loss = float(val_loss_fn(logits, val_set.labels))
        val_acc = float((logits.argmax(1) == val_set.labels).float().mean())
        elapsed = time.monotonic() - run_start
        state["history"].append({"epoch": epoch + 1, "train_loss": running / max(seen, 1), "val_loss": val_loss,
                                 "val_accuracy": val_acc, "input_size": size, "seconds": round(elapsed, 1)})
        print(f"epoch {epoch + 1}: train loss {running / max(seen, 1):.4f}, val loss {val_loss:.4f}, "
              f"val accuracy {val_acc:.4f}, {elapsed / 60:.1f} min", file=sys.stderr, flush=True)
        # Only full-size epochs may become the best: a model chosen at the warm-up size would
        # carry BatchNorm statistics from the wrong scale.
        if size == cfg.input_size and val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0,
                         best_state={k: v.detach().clone() for k, v in model.state_dict().items()})
        elif size == cfg.input_size:
            state["bad_epochs"] = int(state["bad_epochs"]) + 1
        state["epoch"] = epoch + 1
        state["elapsed"] = elapsed
        _atomic_torch_save({"format": RESUME_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": {"step": int(state["step"]), "total_steps": total_steps, "warmup": warmup},
                            **{k: state[k] for k in ("epoch", "best_val_loss", "best_epoch", "bad_epochs",
                                                     "history", "best_state", "elapsed")},
                            "config": asdict(cfg)}, resume_file)
        if cfg.max_minutes is not None and elapsed / 60 * (epoch + 2) / (epoch + 1) > cfg.max_minutes:
            print("stopping: the next epoch would pass the time budget", file=sys.stderr, flush=True)
            break

    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    logits = _evaluate_logits(clf, val_set, 64)
    temperature = fit_temperature(logits, val_set.labels) if cfg.calibrate else 1.0
    fold_temperature(model, temperature)
    probs = torch.softmax(logits.double() / temperature, dim=1)[:, positive].numpy()
    threshold = choose_threshold(probs, (val_set.labels == positive).numpy(), cfg.threshold_rule)
    seconds = time.monotonic() - started
    model = model.to(memory_format=torch.contiguous_format)
    rule_text = {"youden": "maximises Youden's J (sensitivity + specificity - 1) on the validation split",
                 "sens95": "highest threshold with validation sensitivity >= 0.95"}[cfg.threshold_rule]
    train_counts = {n: sum(s.label == i for s in train_samples) for i, n in enumerate(folder.class_names)}
    val_counts = {n: sum(s.label == i for s in val_samples) for i, n in enumerate(folder.class_names)}
    full_card: dict[str, Any] = {
        "architecture": "torchvision EfficientNet-B0, head Dropout(0.2) + Linear(1280, classes)",
        "input_size": cfg.input_size,
        "normalization": {"mean": list(clf.mean), "std": list(clf.std),
                          "resize": "whole image to a square, area averaging when shrinking, no crop"},
        "classes": list(folder.class_names),
        "threshold": threshold,
        "threshold_rule": rule_text,
        "threshold_applies_to": f"p({POSITIVE_CLASS})",
        "calibration": {"method": "temperature scaling on the validation split, folded into the last Linear layer",
                        "temperature": temperature},
        "training": {"init": cfg.init if cfg.init in ("scratch", "imagenet") else "checkpoint",
                     "config": asdict(cfg), "train_counts": train_counts, "val_counts": val_counts,
                     "epochs_run": int(state["epoch"]), "best_epoch": int(state["best_epoch"]),
                     "best_val_loss": float(state["best_val_loss"]), "history": state["history"],
                     "wall_time_seconds": round(seconds, 1),
                     "cpu_time_seconds": round(time.process_time() - cpu_started, 1),
                     "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
                                f"{torch.get_num_threads()} threads"},
    }
    previous = init_card.get("training")
    if isinstance(previous, dict):
        # Training that continues a checkpoint carries that checkpoint's record, so the card's
        # time is the whole way from scratch to this model.
        full_card["training"]["init_training"] = previous
        full_card["training"]["total_wall_time_seconds"] = round(
            seconds + float(previous.get("total_wall_time_seconds", previous.get("wall_time_seconds", 0.0))), 1)
    else:
        full_card["training"]["total_wall_time_seconds"] = round(seconds, 1)
    full_card.update(card or {})
    sha = save_checkpoint(out, model, class_names=folder.class_names, input_size=cfg.input_size, head=head,
                          threshold=threshold, card=full_card, temperature=temperature)
    return TrainResult(checkpoint=out, sha256=sha, epochs_run=int(state["epoch"]), best_epoch=int(state["best_epoch"]),
                       best_val_loss=float(state["best_val_loss"]), temperature=temperature, threshold=threshold,
                       seconds=seconds, history=list(state["history"]), card=full_card)
