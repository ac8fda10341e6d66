"""Training an EfficientNet-B0 cataract classifier on a labelled image folder, resumably, on a CPU if need be."""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from components.base.files import atomic_write_bytes
from components.base.tables import read_csv
from models.classifier import (
    DEFAULT_INPUT_SIZE,
    POSITIVE_CLASS,
    CheckpointError,
    Classifier,
    HeadSpec,
    build_model,
    default_head,
    load_classifier,
    save_checkpoint,
)
from models.training.calibration import (
    THRESHOLD_RULE_TEXT,
    THRESHOLD_RULES,
    choose_threshold,
    fit_temperature,
    fold_temperature,
    last_linear,
)
from models.training.data import DecodedSet, LabelledFolder, Sample, TrainError, augment, read_folder, split_samples

__all__ = [
    "DEMO_CARD",
    "RESUME_FORMAT",
    "THRESHOLD_RULES",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "describe_training_data",
    "initial_model",
    "read_folder",
    "train",
]

RESUME_FORMAT = "cataract-cam-train-state/1"
PLAIN_INITS = ("scratch", "imagenet")

DEMO_CARD: dict[str, Any] = {
    "demo": True,
    "intended_use": "Demonstration and software testing only. Not for clinical use. Trained on synthetic "
                    "images only; its output on real photographs means nothing.",
    "known_limits": [
        "Real eye photographs are out of distribution: the model has never seen one.",
        "Trained and tested only on images from this project's own generator, whose look, framing and "
        "cataract appearance are simplified.",
        "Not validated on any patient population; sensitivity and specificity on real eyes are unknown.",
        "Its last training stage used attention guidance (a loss on class evidence outside the pupil mask), "
        "so its Grad-CAM pointing game is partly a training target, not independent evidence; the "
        "independent evidence that it reads the lens is that the generator's classes differ only there.",
    ],
}
"""What the card of a demonstration model (``train --demo``) says about its use and its limits."""


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


# ------------------------------------------------------------------------------------------
# Data and the starting model.
# ------------------------------------------------------------------------------------------


@dataclass
class _Split:
    folder: LabelledFolder
    val_folder: LabelledFolder
    train: list[Sample]
    val: list[Sample]

    def counts(self, samples: list[Sample]) -> dict[str, int]:
        return {n: sum(s.label == i for s in samples) for i, n in enumerate(self.folder.class_names)}


def _read_data(data: str | os.PathLike[str], val_data: str | os.PathLike[str] | None, cfg: TrainConfig) -> _Split:
    folder = read_folder(data)
    if val_data is not None:
        val_folder = read_folder(val_data)
        if val_folder.class_names != folder.class_names:
            raise TrainError("The validation folder's classes differ from the training folder's.")
        split = _Split(folder, val_folder, folder.samples, val_folder.samples)
    else:
        train_samples, val_samples = split_samples(folder.samples, cfg.val_fraction, cfg.seed)
        split = _Split(folder, folder, train_samples, val_samples)
    if POSITIVE_CLASS not in folder.class_names:
        raise TrainError(f"The data folder has no {POSITIVE_CLASS.lower()}/ sub-folder; expected one.")
    return split


def describe_training_data(data: str | os.PathLike[str]) -> dict[str, Any]:
    """What the training folder was, for the card: its name, and the generator's seeds when labels.csv has them."""
    data = Path(data)
    labels = data / "labels.csv"
    info: dict[str, Any] = {"folder": data.name}
    if labels.is_file():
        _, rows = read_csv(labels)
        info["images"] = len(rows)
        if rows and "seed" in rows[0]:
            from models.synthetic import GENERATOR_VERSION

            info["synthetic"] = True
            info["generator_version"] = GENERATOR_VERSION
            dataset_seeds = sorted({r["file"].split("_")[1] for r in rows if r["file"].count("_") >= 2})
            info["dataset_seeds"] = dataset_seeds
    return info


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy everything but the head from ``state``; refuse weights that are not an EfficientNet-B0's."""
    backbone = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except RuntimeError:  # same names, other shapes
        missing, unexpected = [], ["(tensor shapes)"]
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise TrainError(f"The {source} do not fit EfficientNet-B0: {len(missing)} of its tensors missing, "
                         f"{len(unexpected)} unexpected.")


def _imagenet_state() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for EfficientNet-B0 from torch's cache, downloaded into it when missing."""
    from torchvision.models import EfficientNet_B0_Weights

    weights = EfficientNet_B0_Weights.IMAGENET1K_V1
    file_name = PureWindowsPath(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        # torch.hub announces a download on stdout, which belongs to --json; the bar goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            return weights.get_state_dict(progress=True, check_hash=True, weights_only=True, map_location="cpu")
    except OSError as exc:  # URLError (no network, no such host) is an OSError too
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise TrainError(
            f"The ImageNet weights for EfficientNet-B0 are not in torch's cache and cannot be downloaded offline "
            f"(the download failed: {reason}). Use --init scratch or --init CHECKPOINT, or put {file_name} "
            f"(from {weights.url}) into {cache}."
        ) from None
    except RuntimeError as exc:
        raise TrainError(f"The ImageNet weights could not be used ({exc}); delete {cache / file_name} so that "
                         "they are downloaded again, or use --init scratch or --init CHECKPOINT.") from None


def initial_model(init: str, num_classes: int) -> tuple[nn.Module, HeadSpec, dict[str, Any]]:
    """The starting model, its head spec, and the card of the checkpoint it came from (empty otherwise).

    ``init`` is ``scratch`` (random weights), ``imagenet`` (torchvision's ImageNet backbone, a new
    head) or a checkpoint's path (its whole model; only its backbone when its classes differ).
    """
    head = default_head(num_classes)
    if init == "scratch":
        return build_model(head), head, {}
    if init == "imagenet":
        model = build_model(head)
        _load_backbone(model, _imagenet_state(), "ImageNet weights")
        return model, head, {}
    try:
        start = load_classifier(init)
    except CheckpointError as exc:
        raise TrainError(f"--init checkpoint cannot be used: {exc}") from None
    if last_linear(start.model).out_features != num_classes:
        model = build_model(head)
        _load_backbone(model, start.model.state_dict(), "--init checkpoint's weights")
        return model, head, dict(start.card)
    return start.model, start.head or head, dict(start.card)


# ------------------------------------------------------------------------------------------
# The stage loop.
# ------------------------------------------------------------------------------------------


@dataclass
class _RunState:
    """What carries from epoch to epoch, and what the resume file holds besides weights and optimizer."""

    epoch: int = 0
    step: int = 0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    elapsed: float = 0.0

    def saved(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SAVED_KEYS}


_SAVED_KEYS = ("epoch", "best_val_loss", "best_epoch", "bad_epochs", "history", "best_state", "elapsed")


@dataclass
class _Schedule:
    """AdamW's learning rate: a linear warm-up, then a cosine decay to zero."""

    base: float
    total_steps: int
    warmup: int

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        return self.base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _pupil_share_grid(mask: np.ndarray | None, grid: tuple[int, int]) -> np.ndarray:
    """Share of each feature-map cell covered by the pupil (all ones without a mask: no penalty)."""
    if mask is None:
        return np.ones(grid, np.float32)
    return cv2.resize((mask > 127).astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)


def _guided_forward(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    masks: list[np.ndarray | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and the mean share of the true class's positive evidence that lies outside the pupil.

    For EfficientNet (features -> average pool -> head ending in a Linear layer) the true class's
    evidence at each cell of the last feature map is its features dotted with that class's
    weights: the class activation map, which Grad-CAM at ``features.8`` reproduces exactly. The
    penalty is the share of its positive part outside the pupil, so the model is taught to build
    its decision from the lens rather than from wherever its features happen to spread.
    """
    features = model.get_submodule("features")(x)
    pooled = model.get_submodule("avgpool")(features)
    logits = model.get_submodule("classifier")(torch.flatten(pooled, 1))
    cam = torch.einsum("bchw,bc->bhw", features, last_linear(model).weight[y]).clamp(min=0)
    grid = (int(features.shape[2]), int(features.shape[3]))
    pupil = torch.from_numpy(np.stack([_pupil_share_grid(m, grid) for m in masks]))
    outside = (cam * (1 - pupil)).sum((1, 2)) / (cam.sum((1, 2)) + 1e-6)
    return logits, outside.mean()


def _evaluate_logits(clf: Classifier, data: DecodedSet, batch_size: int) -> torch.Tensor:
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
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _epoch_bar(progress: bool, total: int, desc: str) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="image", file=sys.stderr, disable=None)


@dataclass
class _Stage:
    """One training run's moving parts: the model and the evaluation classifier, data, loss, optimizer."""

    cfg: TrainConfig
    clf: Classifier
    train_set: DecodedSet
    val_set: DecodedSet
    progress: bool
    loss_fn: nn.Module = field(init=False)
    optimizer: torch.optim.Optimizer = field(init=False)
    schedule: _Schedule = field(init=False)

    def __post_init__(self) -> None:
        cfg, classes = self.cfg, len(self.clf.class_names)
        counts = torch.bincount(self.train_set.labels, minlength=classes).double()
        class_weights = (counts.sum() / (len(counts) * counts.clamp(min=1))).float()
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights)
        self.optimizer = torch.optim.AdamW(self.clf.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total_steps = math.ceil(len(self.train_set.samples) / cfg.batch_size) * cfg.epochs
        self.schedule = _Schedule(cfg.lr, total_steps, max(1, int(cfg.warmup_fraction * total_steps)))

    def restore(self, resume_file: Path, run: _RunState) -> None:
        saved = torch.load(resume_file, map_location="cpu", weights_only=True)
        if saved.get("format") != RESUME_FORMAT:
            raise TrainError("The resume file is not a training state written by this program.")
        self.clf.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        for key in _SAVED_KEYS:
            setattr(run, key, saved[key])
        run.step = int(saved["scheduler"]["step"])

    def save(self, resume_file: Path, run: _RunState) -> None:
        _atomic_torch_save({"format": RESUME_FORMAT, "model": self.clf.model.state_dict(),
                            "optimizer": self.optimizer.state_dict(),
                            "scheduler": {"step": run.step, "total_steps": self.schedule.total_steps,
                                          "warmup": self.schedule.warmup},
                            **run.saved(), "config": asdict(self.cfg)}, resume_file)

    def train_epoch(self, run: _RunState, size: int) -> float:
        """One pass over the training images at input ``size``; the mean training loss."""
        cfg, model, data = self.cfg, self.clf.model, self.train_set
        train_clf = Classifier(model=model, class_names=self.clf.class_names, input_size=size, head=self.clf.head)
        # Each epoch's randomness comes from (seed, epoch), so a resumed run repeats the same epochs.
        rng = np.random.default_rng([cfg.seed, run.epoch])
        torch.manual_seed(cfg.seed * 1000 + run.epoch)
        order = rng.permutation(len(data.samples))
        model.train()
        running, seen = 0.0, 0
        bar = _epoch_bar(self.progress, len(order), f"epoch {run.epoch + 1}/{cfg.epochs}")
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            pairs = [augment(data.images[i], rng, data.masks[i]) if cfg.augment
                     else (data.images[i], data.masks[i]) for i in idx]
            x = train_clf.preprocess([p[0] for p in pairs])
            y = data.labels[idx]
            for group in self.optimizer.param_groups:
                group["lr"] = self.schedule.lr_at(run.step)
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.attention_weight > 0:
                logits, outside = _guided_forward(model, x, y, [p[1] for p in pairs])
                loss = self.loss_fn(logits, y) + cfg.attention_weight * outside
            else:
                loss = self.loss_fn(model(x), y)
            loss.backward()
            self.optimizer.step()
            run.step += 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(len(idx))
                bar.set_postfix(loss=f"{running / seen:.3f}")
        if bar is not None:
            bar.close()
        return running / max(seen, 1)

    def validate(self, run: _RunState, size: int, train_loss: float, run_start: float) -> float:
        """Score the validation images, record the epoch, keep the best full-size weights; the time so far."""
        cfg, labels = self.cfg, self.val_set.labels
        logits = _evaluate_logits(self.clf, self.val_set, 64)
        elapsed = time.monotonic() - run_start
        val_loss = float(nn.CrossEntropyLoss()(logits, labels))
        val_acc = float((logits.argmax(1) == labels).float().mean())
        run.history.append({"epoch": run.epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                            "val_accuracy": val_acc, "input_size": size, "seconds": round(elapsed, 1)})
        print(f"epoch {run.epoch + 1}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
              f"val accuracy {val_acc:.4f}, {elapsed / 60:.1f} min", file=sys.stderr, flush=True)
        # Only full-size epochs may become the best: a model chosen at the warm-up size would
        # carry BatchNorm statistics from the wrong scale.
        if size == cfg.input_size and val_loss < run.best_val_loss:
            run.best_val_loss, run.best_epoch, run.bad_epochs = val_loss, run.epoch + 1, 0
            run.best_state = {k: v.detach().clone() for k, v in self.clf.model.state_dict().items()}
        elif size == cfg.input_size:
            run.bad_epochs += 1
        return elapsed

    def fit(self, resume_file: Path, resume: bool) -> _RunState:
        """Epochs until the last, early stopping or the time budget; each one saved for resuming."""
        cfg, run = self.cfg, _RunState()
        if resume and resume_file.is_file():
            self.restore(resume_file, run)
        run_start = time.monotonic() - run.elapsed
        while run.epoch < cfg.epochs and run.bad_epochs < cfg.patience:
            size = cfg.warmup_size if cfg.warmup_size and run.epoch < cfg.warmup_size_epochs else cfg.input_size
            train_loss = self.train_epoch(run, size)
            elapsed = self.validate(run, size, train_loss, run_start)
            run.epoch += 1
            run.elapsed = elapsed
            self.save(resume_file, run)
            if cfg.max_minutes is not None and elapsed / 60 * (run.epoch + 1) / run.epoch > cfg.max_minutes:
                print("stopping: the next epoch would pass the time budget", file=sys.stderr, flush=True)
                break
        return run

    def calibrate(self, run: _RunState) -> tuple[float, float]:
        """Back to the best weights; the temperature (folded into the head) and the threshold, on validation."""
        model, labels = self.clf.model, self.val_set.labels
        if run.best_state is not None:
            model.load_state_dict(run.best_state)
        model.eval()
        logits = _evaluate_logits(self.clf, self.val_set, 64)
        temperature = fit_temperature(logits, labels) if self.cfg.calibrate else 1.0
        fold_temperature(model, temperature)
        positive = self.clf.class_names.index(POSITIVE_CLASS)
        probs = torch.softmax(logits.double() / temperature, dim=1)[:, positive].numpy()
        return temperature, choose_threshold(probs, (labels == positive).numpy(), self.cfg.threshold_rule)


# ------------------------------------------------------------------------------------------
# The card and the run.
# ------------------------------------------------------------------------------------------


def _init_name(init: str) -> str:
    """What a card records for ``init``: scratch, imagenet, or a checkpoint's file name, never its folder."""
    return init if init in PLAIN_INITS else PureWindowsPath(init).name  # splits at / and at \


def _portable_record(record: dict[str, Any]) -> dict[str, Any]:
    """A training record, and the records it continues, with every ``config.init`` reduced to a file name."""
    record = dict(record)
    config = record.get("config")
    if isinstance(config, dict) and isinstance(config.get("init"), str):
        record["config"] = {**config, "init": _init_name(config["init"])}
    if isinstance(record.get("init_training"), dict):
        record["init_training"] = _portable_record(record["init_training"])
    return record


def _training_record(cfg: TrainConfig, split: _Split, run: _RunState, seconds: float, cpu_seconds: float,
                     init_card: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "init": cfg.init if cfg.init in PLAIN_INITS else "checkpoint",
        "config": {**asdict(cfg), "init": _init_name(cfg.init)},
        "train_counts": split.counts(split.train), "val_counts": split.counts(split.val),
        "epochs_run": run.epoch, "best_epoch": run.best_epoch, "best_val_loss": float(run.best_val_loss),
        "history": run.history, "wall_time_seconds": round(seconds, 1), "cpu_time_seconds": round(cpu_seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
    }
    previous = init_card.get("training")
    if isinstance(previous, dict):
        # Training that continues a checkpoint carries that checkpoint's record, so the card's
        # time is the whole way from scratch to this model.
        record["init_training"] = _portable_record(previous)
        earlier = previous.get("total_wall_time_seconds", previous.get("wall_time_seconds", 0.0))
        record["total_wall_time_seconds"] = round(seconds + float(earlier or 0.0), 1)
    else:
        record["total_wall_time_seconds"] = round(seconds, 1)
    return record


def _model_card(cfg: TrainConfig, clf: Classifier, temperature: float, threshold: float,
                training: dict[str, Any]) -> dict[str, Any]:
    return {
        "architecture": "EfficientNet-B0 (torchvision's layout), head Dropout(0.2) + Linear(1280, classes)",
        "input_size": cfg.input_size,
        "normalization": {"mean": list(clf.mean), "std": list(clf.std),
                          "resize": "whole image to a square, area averaging when shrinking, no crop"},
        "classes": list(clf.class_names),
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE_TEXT[cfg.threshold_rule],
        "threshold_applies_to": f"p({POSITIVE_CLASS})",
        "calibration": {"method": "temperature scaling on the validation split, folded into the last Linear layer",
                        "temperature": temperature},
        "training": training,
    }


def _check_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TrainError(f"Epochs and batch size must be at least 1, got {cfg.epochs} and {cfg.batch_size}.")
    if cfg.input_size < 32:
        raise TrainError(f"The input size must be at least 32 pixels, got {cfg.input_size}.")
    if cfg.threshold_rule not in THRESHOLD_RULES:
        raise TrainError(f"Unknown threshold rule {cfg.threshold_rule!r}; "
                         f"expected one of {', '.join(THRESHOLD_RULES)}.")


def _decoding_bars(progress: bool) -> Callable[[str], Callable[[Iterable[Any]], Iterable[Any]]] | None:
    if not progress:
        return None
    from tqdm import tqdm

    def bar_factory(desc: str) -> Callable[[Iterable[Any]], Iterable[Any]]:
        return lambda it: tqdm(it, desc=desc, unit="image", file=sys.stderr, leave=False, disable=None)

    return bar_factory


def _typicality(clf: Classifier, train_set: DecodedSet, val_set: DecodedSet) -> tuple[dict[str, Any] | None, str]:
    """Statistics of the training photographs' features, thresholded on the validation split, and a note.

    Too few photographs give no statistics (the screen then says "not available"), never a guess.
    """
    from components.typicality.score import MIN_PHOTOGRAPHS, fit_typicality, stats_to_payload

    if min(len(train_set.images), len(val_set.images)) < MIN_PHOTOGRAPHS:
        return None, (f"not available: fewer than {MIN_PHOTOGRAPHS} training or validation photographs "
                      "to fit and threshold them")
    stats = fit_typicality(clf, train_set.images, val_set.images, labels=train_set.labels.numpy())
    info = stats.info
    return stats_to_payload(stats, tensors=True), (
        f"stored in the checkpoint: fitted on {info['reference_count']} training photographs, threshold "
        f"{stats.threshold:.4g} flags {info['heldout_flagged']:.1%} of {info['heldout_count']} validation photographs")


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], config: TrainConfig | None = None, *,
          val_data: str | os.PathLike[str] | None = None, resume: bool = False,
          card: dict[str, Any] | None = None, progress: bool = True) -> TrainResult:
    """Train, calibrate, choose the threshold on validation data and write the checkpoint with its card.

    Each finished epoch writes ``<out>.last.pt`` (weights, optimizer, schedule position, best
    weights so far, history), so ``resume=True`` continues from the last finished epoch.

    Raises:
        TrainError: the options, the data folders, ``init`` or the resume file cannot be used.
    """
    cfg = config or TrainConfig()
    _check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    started, cpu_started = time.monotonic(), time.process_time()
    split = _read_data(data, val_data, cfg)
    torch.manual_seed(cfg.seed)
    model, head, init_card = initial_model(cfg.init, len(split.folder.class_names))
    model = model.to(memory_format=torch.channels_last)
    clf = Classifier(model=model, class_names=split.folder.class_names, input_size=cfg.input_size, head=head)
    if cfg.attention_weight > 0 and not split.folder.has_masks:
        raise TrainError("Attention guidance needs pupil masks in DATA/masks/; none were found.")
    bars = _decoding_bars(progress)
    stage = _Stage(cfg, clf, DecodedSet(split.folder, split.train, cfg.input_size, split.folder.has_masks, bars),
                   DecodedSet(split.val_folder, split.val, cfg.input_size, False, bars), progress)
    run = stage.fit(_resume_path(out), resume)
    temperature, threshold = stage.calibrate(run)
    seconds = time.monotonic() - started
    clf.model = model.to(memory_format=torch.contiguous_format)
    training = _training_record(cfg, split, run, seconds, time.process_time() - cpu_started, init_card)
    full_card = {**_model_card(cfg, clf, temperature, threshold, training), **(card or {})}
    typicality, full_card["typicality_statistics"] = _typicality(clf, stage.train_set, stage.val_set)
    sha = save_checkpoint(out, clf.model, class_names=split.folder.class_names, input_size=cfg.input_size,
                          head=head, threshold=threshold, card=full_card, temperature=temperature,
                          typicality=typicality)
    return TrainResult(checkpoint=out, sha256=sha, epochs_run=run.epoch, best_epoch=run.best_epoch,
                       best_val_loss=float(run.best_val_loss), temperature=temperature, threshold=threshold,
                       seconds=seconds, history=list(run.history), card=full_card)
