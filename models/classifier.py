"""The cataract classifier: EfficientNet-B0 with a custom head, its checkpoints and its one preprocessing path."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from components.base.files import atomic_write_bytes
from models.efficientnet import efficientnet_b0
from models.metadata import CheckpointError, check_class_names, check_dropout, check_metadata

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_MODEL_PATH = WEIGHTS_DIR / "cataract_b0_demo.pt"
DEFAULT_CLASS_NAMES = ("Cataract", "Normal")  # the order ImageFolder gives Cataract/ and Normal/
DEFAULT_INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_TARGET_LAYER = "features.8"
FEATURE_DIM = 1280
CHECKPOINT_FORMAT = "cataract-cam/1"
POSITIVE_CLASS = "Cataract"

# Parameter-free layers cannot be read off a state dict, so an activation is named here.
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
_STATE_KEYS = ("model_state_dict", "state_dict", "model")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")


HeadSpec = list[dict[str, Any]]


def _layer_size(layer: Mapping[str, Any], key: str) -> int:
    value = layer.get(key)
    # A head wider than this is no classifier head; the bound keeps a hostile spec from allocating gigabytes.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65536:
        raise CheckpointError(f"The checkpoint's head has a {layer.get('type')} layer whose {key} is {value!r}; "
                              "expected a whole number from 1 to 65536.")
    return value


def _head_from_spec(spec: HeadSpec) -> nn.Module:
    layers: list[nn.Module] = []
    for layer in spec:
        if not isinstance(layer, Mapping):
            raise CheckpointError(f"The checkpoint's head holds a {type(layer).__name__}; expected layer mappings.")
        kind = layer.get("type")
        if kind == "linear":
            layers.append(nn.Linear(_layer_size(layer, "in"), _layer_size(layer, "out")))
        elif kind == "batchnorm":
            layers.append(nn.BatchNorm1d(_layer_size(layer, "features")))
        elif kind == "dropout":
            layers.append(nn.Dropout(check_dropout(layer.get("p", 0.0))))
        elif kind in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[kind]())
        else:
            raise CheckpointError(
                f"Unknown head layer type {kind!r}; expected linear, batchnorm, dropout, "
                f"{', '.join(_ACTIVATIONS)}."
            )
    return nn.Sequential(*layers)


def default_head(num_classes: int, hidden: int | None = None, activation: str = "silu") -> HeadSpec:
    """A head spec: Dropout + Linear, or Dropout + Linear + activation + Dropout + Linear."""
    if hidden is None:
        return [{"type": "dropout", "p": 0.2}, {"type": "linear", "in": FEATURE_DIM, "out": num_classes}]
    return [
        {"type": "dropout", "p": 0.3},
        {"type": "linear", "in": FEATURE_DIM, "out": hidden},
        {"type": activation},
        {"type": "dropout", "p": 0.2},
        {"type": "linear", "in": hidden, "out": num_classes},
    ]


def build_model(head: HeadSpec | int = 2) -> nn.Module:
    """EfficientNet-B0 in torchvision's layout (random weights) with the given head (a spec or a class count).

    The 1000-class head is built and then replaced, as it was with torchvision's constructor, so
    that a seeded build draws the same weights as before.
    """
    spec = default_head(head) if isinstance(head, int) else head
    model = efficientnet_b0()
    model.classifier = _head_from_spec(spec)
    return model


def infer_head(state: Mapping[str, torch.Tensor], activation: str = "relu") -> HeadSpec:
    """Reconstruct the head's layers from the shapes of its weights.

    Only Linear and BatchNorm1d layers leave weights; the gaps between their indices are
    parameter-free layers. The first gap after a hidden Linear holds the activation (its kind is
    not in the weights, hence the argument), every other gap a Dropout, which is the identity at
    inference, so its place does not change the output.

    Raises:
        CheckpointError: an unknown activation, no head, weights that are not Linear or
            BatchNorm1d, a head that cannot be told apart or does not chain.
    """
    if activation not in _ACTIVATIONS:
        raise CheckpointError(
            f"Unknown head activation {activation!r}; expected one of {', '.join(_ACTIVATIONS)}."
        )
    head_keys = [k for k in state if k.startswith("classifier.")]
    if not head_keys:
        raise CheckpointError("The checkpoint has no classifier head (no 'classifier.*' weights).")
    if "classifier.weight" in state:  # a bare Linear head rather than a Sequential
        w = state["classifier.weight"]
        return [{"type": "linear", "in": int(w.shape[1]), "out": int(w.shape[0])}]
    layers = _head_layers(state, head_keys)
    spec = _fill_gaps(layers, activation)
    dims = [(e["in"], e["out"]) for e in spec if e["type"] == "linear"]
    if dims[0][0] != FEATURE_DIM:
        raise CheckpointError(
            f"The head's first Linear takes {dims[0][0]} features; EfficientNet-B0 gives {FEATURE_DIM}."
        )
    for (_, out), (nxt, _) in itertools.pairwise(dims):
        if out != nxt:
            raise CheckpointError(f"The head's Linear layers do not chain: {out} outputs feed {nxt} inputs.")
    return spec


def _head_layers(state: Mapping[str, torch.Tensor], head_keys: list[str]) -> dict[int, dict[str, Any]]:
    """Index -> {"type": "linear"|"batchnorm", sizes} for the head layers that hold weights."""
    layers: dict[int, dict[str, Any]] = {}
    for key in head_keys:
        parts = key.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            raise CheckpointError(
                f"Cannot infer the head from weight {key!r}; expected 'classifier.<index>.<name>' "
                "of a Sequential of Linear, BatchNorm1d, activation and Dropout layers."
            )
        index, name = int(parts[1]), parts[2]
        tensor = state[key]
        entry = layers.setdefault(index, {})
        if name == "weight" and tensor.ndim == 2:
            entry.update(type="linear", **{"in": int(tensor.shape[1]), "out": int(tensor.shape[0])})
        elif name in ("running_mean", "running_var", "num_batches_tracked") or (
            name in ("weight", "bias") and tensor.ndim == 1 and entry.get("type") != "linear"
        ):
            if name != "num_batches_tracked":
                entry.setdefault("type", "batchnorm")
                if entry["type"] == "batchnorm":
                    entry["features"] = int(tensor.shape[0])
        elif name != "bias":
            raise CheckpointError(
                f"Cannot infer the head from weight {key!r} of shape {tuple(tensor.shape)}; "
                "expected Linear or BatchNorm1d layers."
            )
    for index, entry in layers.items():
        if "type" not in entry:
            raise CheckpointError(f"Cannot tell what head layer classifier.{index} is from its weights.")
    return layers


def _fill_gaps(layers: dict[int, dict[str, Any]], activation: str) -> HeadSpec:
    """The full layer list: the activation in the first gap after a hidden Linear, Dropout elsewhere."""
    linear_idx = sorted(i for i, e in layers.items() if e["type"] == "linear")
    if not linear_idx:
        raise CheckpointError("The classifier head has no Linear layer; cannot infer it.")
    spec: HeadSpec = []
    pending_activation = False
    for index in range(max(layers) + 1):
        if index not in layers:
            spec.append({"type": activation} if pending_activation else {"type": "dropout", "p": 0.0})
            pending_activation = False
            continue
        entry = layers[index]
        if entry["type"] == "linear":
            if spec and pending_activation:
                raise CheckpointError(
                    f"Head layer classifier.{index} follows a hidden Linear with no activation "
                    "between them; cannot infer the head."
                )
            pending_activation = index != linear_idx[-1]
        spec.append(dict(entry))
    return spec


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"The state dict entry {key!r} is a {type(value).__name__}, not a tensor."
            )
        for prefix in _STRIPPED_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _hostile_message() -> str:
    return (
        "The checkpoint contains pickled Python objects (a whole model or code), which are not "
        "loaded because unpickling can run arbitrary code; save the weights instead with "
        "torch.save({'model_state_dict': model.state_dict()}, path) or models.save_checkpoint()."
    )


def _read_checkpoint(data: bytes) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(_hostile_message()) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(_hostile_message()) from None
        raise CheckpointError(
            "The file is truncated or is not a PyTorch checkpoint (torch.save output) and cannot be read."
        ) from None


def _extract_state(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"The checkpoint holds a {type(obj).__name__}; expected a state dict or a dict holding one "
            f"under {', '.join(repr(k) for k in _STATE_KEYS)}."
        )
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _strip_prefixes(obj), {}
    for key in _STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            meta = {k: v for k, v in obj.items() if k != key}
            return _strip_prefixes(inner), meta
    raise CheckpointError(
        "The checkpoint has no weights: expected a state dict or a dict holding one under "
        f"{', '.join(repr(k) for k in _STATE_KEYS)}."
    )


def _check_backbone(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    given = {k: v.shape for k, v in state.items() if not k.startswith("classifier.")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} EfficientNet-B0 weights missing (first: {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (first: {unexpected[0]!r})")
        raise CheckpointError(
            "The checkpoint is not an EfficientNet-B0: " + " and ".join(parts) + "."
        )
    for key, shape in expected.items():
        if given[key] != shape:
            raise CheckpointError(
                f"The checkpoint is not an EfficientNet-B0: weight {key!r} has shape "
                f"{tuple(given[key])}, expected {tuple(shape)}."
            )


def _sidecar(path: Path) -> dict[str, Any]:
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise CheckpointError(
                    f"The model card {candidate.name} beside the checkpoint is not valid JSON."
                ) from None
            if isinstance(data, dict):
                return data
    return {}


def _class_names(meta: Mapping[str, Any], card: Mapping[str, Any], n: int,
                 given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        return check_class_names(list(given) if isinstance(given, tuple) else given, n, "given")
    for source, where in ((meta, "checkpoint"), (card, "model card")):
        for key in ("class_names", "classes"):
            if key in source:
                return check_class_names(source[key], n, where)
        to_idx = source.get("class_to_idx")
        if isinstance(to_idx, Mapping):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in to_idx.values()):
                raise CheckpointError(f"The {where}'s class_to_idx maps a class to something not an index.")
            return check_class_names(sorted(to_idx, key=lambda c: to_idx[c]), n, where)
    if n == 2:
        return DEFAULT_CLASS_NAMES
    return check_class_names([f"class_{i}" for i in range(n)], n, "checkpoint")


@dataclass
class Classifier:
    """A loaded model plus everything needed to feed it and to describe it."""

    model: nn.Module
    class_names: tuple[str, ...]
    input_size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_sha256: str = ""
    card: dict[str, Any] = field(default_factory=dict)
    target_layer: str = DEFAULT_TARGET_LAYER
    threshold: float = 0.5
    path: Path | None = None
    head: HeadSpec = field(default_factory=list)
    # Statistics of the training photographs (components.typicality.score), as stored; None: none known.
    typicality: dict[str, Any] | None = None

    @property
    def is_demo(self) -> bool:
        """True when this is the shipped demonstration model (trained on synthetic images)."""
        return bool(self.card.get("demo", False))

    @property
    def name(self) -> str:
        return str(self.card.get("name") or (self.path.stem if self.path else "EfficientNet-B0"))

    @property
    def positive_index(self) -> int | None:
        """Index of the Cataract class, whose probability the threshold applies to."""
        lowered = [c.lower() for c in self.class_names]
        return lowered.index(POSITIVE_CLASS.lower()) if POSITIVE_CLASS.lower() in lowered else None

    def preprocess(self, images: Sequence[np.ndarray | Image.Image] | np.ndarray | Image.Image) -> torch.Tensor:
        """RGB uint8 images to the normalised batch the model takes.

        The whole image is resized to the square input (no crop), so a map at input resolution
        maps back onto the whole photograph by a plain resize. Area averaging when shrinking
        keeps thin structures (lashes, vessels) from aliasing.
        """
        if isinstance(images, (np.ndarray, Image.Image)):
            images = [images]
        size = self.input_size
        batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            arr = _as_rgb_uint8(image)
            h, w = arr.shape[:2]
            if (h, w) != (size, size):
                interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
                arr = cv2.resize(arr, (size, size), interpolation=interp)
            batch[i] = arr
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        # permute() of an NHWC buffer is already channels_last, the layout the CPU kernels prefer.
        return tensor.sub_(mean).div_(std)

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
        """Class probabilities, shape (N, classes), for plain inference without maps."""
        logits = self.model(self.preprocess(images))
        return torch.softmax(logits.float(), dim=1).numpy()


def _as_rgb_uint8(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {got}.")
    return image


def load_classifier(path: str | os.PathLike[str] | None = None, *, class_names: Sequence[str] | None = None,
                    activation: str | None = None) -> Classifier:
    """Load an EfficientNet-B0 checkpoint safely (``weights_only``); ``None`` loads the shipped demo model."""
    if path is None:
        if not DEMO_MODEL_PATH.is_file():
            raise CheckpointError(
                "No model given and the shipped demo model is missing; pass a checkpoint with "
                "--model PATH (or model_path=...)."
            )
        path = DEMO_MODEL_PATH
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise CheckpointError("The model path is a folder; expected a checkpoint file (.pt or .pth).") from None
    except OSError:
        raise CheckpointError("The checkpoint file does not exist or cannot be read.") from None
    return load_classifier_bytes(data, class_names=class_names, activation=activation,
                                 card=_sidecar(path), path=path)


def load_classifier_bytes(data: bytes, *, class_names: Sequence[str] | None = None,
                          activation: str | None = None, card: Mapping[str, Any] | None = None,
                          path: Path | None = None) -> Classifier:
    """Load a checkpoint from its bytes (an upload), with the same checks as :func:`load_classifier`."""
    if not data:
        raise CheckpointError("The checkpoint file is empty.")
    obj = _read_checkpoint(data)
    state, meta = _extract_state(obj)
    card = dict(card or {})
    stored_card = meta.get("card")
    if isinstance(stored_card, Mapping):
        card = {**stored_card, **card}
    act = activation or meta.get("head_activation") or card.get("head_activation") or "relu"
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise CheckpointError(f"The checkpoint's head_activation is {act!r}; "
                              f"expected one of {', '.join(_ACTIVATIONS)}.")
    fields = check_metadata(meta, card, default_input_size=DEFAULT_INPUT_SIZE, default_mean=IMAGENET_MEAN,
                            default_std=IMAGENET_STD)
    head = meta.get("head")
    spec: HeadSpec = [x if not isinstance(x, Mapping) else dict(x) for x in head] if isinstance(head, list) \
        else infer_head(state, str(act))
    model = build_model(spec)
    if "classifier.weight" in state:  # bare Linear head: keep its module path
        model.classifier = nn.Linear(spec[0]["in"], spec[0]["out"])
    _check_backbone(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise CheckpointError(
            "The classifier head's weights do not match the head inferred from them; save the head "
            "spec with models.save_checkpoint()."
        ) from None
    model.eval()
    head = model.get_submodule("classifier")
    last = head[-1] if isinstance(head, nn.Sequential) else head
    if not isinstance(last, nn.Linear):
        raise CheckpointError("The classifier head must end in a Linear layer.")
    n_out = last.out_features
    names = _class_names(meta, card, n_out, class_names)
    # Statistics computed later for this checkpoint (sidecar) win over those stored at training.
    typicality = card.pop("typicality", None) or meta.get("typicality")
    return Classifier(
        model=model,
        class_names=names,
        input_size=fields.input_size,
        mean=fields.mean,
        std=fields.std,
        weights_sha256=hashlib.sha256(data).hexdigest(),
        card=card,
        target_layer=str(meta.get("target_layer") or DEFAULT_TARGET_LAYER),
        threshold=fields.threshold,
        path=path,
        head=spec,
        typicality=dict(typicality) if isinstance(typicality, Mapping) else None,
    )


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, *, class_names: Sequence[str],
                    input_size: int = DEFAULT_INPUT_SIZE, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, head: HeadSpec | None = None,
                    threshold: float = 0.5, card: Mapping[str, Any] | None = None,
                    typicality: Mapping[str, Any] | None = None, **metadata: Any) -> str:
    """Write the checkpoint format :func:`load_classifier` reads, atomically; returns its SHA-256.

    Only tensors and plain data go in, so it loads with ``weights_only=True``; ``typicality`` is
    ``components.typicality.score.stats_to_payload(stats, tensors=True)``.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = _strip_prefixes(state)
    if head is None:
        head = infer_head(state)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_state_dict": state,
        "class_names": list(class_names),
        "input_size": int(input_size),
        "normalization": {"mean": [float(x) for x in mean], "std": [float(x) for x in std]},
        "head": [dict(x) for x in head],
        "threshold": float(threshold),
        "card": json.loads(json.dumps(dict(card or {}))),
        **json.loads(json.dumps(metadata)),
    }
    if typicality is not None:
        payload["typicality"] = dict(typicality)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()
