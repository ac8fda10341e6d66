"""Class activation maps (Grad-CAM and kin) for any classifier-like object, at about the cost of one forward pass.

The model is split at the target layer: everything before it runs without autograd, and only
what follows it (for the default ``features.8`` of an EfficientNet: pooling and the head) is
differentiated. Gradients are taken with ``torch.autograd.grad`` on a detached copy of the
activations, so no ``.grad`` is written, no hook touches the shared model, and several threads
can explain with one model at once.

On request an explanation also keeps what the same forward pass saw on the way: the spatial
mean of named layers' outputs (``pooled``) and a summary of the model's input (``input_summary``),
so that a caller needing them (``components.typicality.score``) does not run the model a second time.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.base.classifier import Explainable
from components.base.errors import CataractCamError

__all__ = ["METHODS", "ExplainError", "Explanation", "explain", "resolve_targets"]


class ExplainError(CataractCamError, ValueError):
    """A request to explain was malformed (unknown method, layer or target)."""


# Each method says only how it weights the layer's activations A by their gradients G, both
# (N, K, h, w); it returns the raw map (N, h, w) before ReLU and normalisation.
def _gradcam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def _gradcam_plus_plus(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    # Chattopadhay et al. 2018, eq. 19 with the exponential-score identity: the higher
    # derivatives are powers of the first, and the activation sum is over the whole map.
    g2 = grads.pow(2)
    g3 = g2 * grads
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                        torch.zeros_like(denom))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def _hirescam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads * acts).sum(dim=1)


def _layercam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    return (grads.clamp(min=0) * acts).sum(dim=1)


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "hirescam": _hirescam,
    "layercam": _layercam,
}
METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM", "layercam": "LayerCAM"}
_METHOD_ALIASES = {"grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++",
                   "gradcamplusplus": "gradcam++", "hires-cam": "hirescam", "layer-cam": "layercam"}


@dataclass(frozen=True)
class Explanation:
    """One image's prediction and the map of the pixels that drove the explained class."""

    prediction: str
    confidence: float
    probabilities: dict[str, float]
    target: str
    cam: np.ndarray  # float32 (input_size, input_size) in [0, 1]
    method: str
    layer: str
    cam_lowres: np.ndarray  # float32 at the layer's own resolution, same normalisation
    logits: tuple[float, ...]
    raw_max: float  # largest value of the map after ReLU, before normalisation: its true magnitude
    is_zero: bool  # the map is flat (all zero after ReLU): nothing to show, zeros rather than NaN
    # With explain(..., pooled=names): each named layer's output averaged over space, float64 (C,).
    pooled: dict[str, np.ndarray] | None = None
    # With explain(..., input_summary=f): f of this image's preprocessed input (C, S, S).
    input_summary: np.ndarray | None = None

    @property
    def target_probability(self) -> float:
        return self.probabilities[self.target]


def _canonical_method(method: str) -> str:
    key = method.strip().lower()
    key = _METHOD_ALIASES.get(key, key)
    if key not in METHODS:
        raise ExplainError(f"Unknown method {method!r}; expected one of {', '.join(METHODS)}.")
    return key


def resolve_targets(class_names: Sequence[str], target: Any, n: int) -> list[int | None]:
    """Per image: a class index to explain, or None for the predicted class."""
    def one(t: Any) -> int | None:
        if t is None:
            return None
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            if not 0 <= int(t) < len(class_names):
                raise ExplainError(f"Target index {int(t)} is out of range for {len(class_names)} classes.")
            return int(t)
        if isinstance(t, str):
            lowered = [c.lower() for c in class_names]
            if t.lower() in lowered:
                return lowered.index(t.lower())
            raise ExplainError(f"Unknown target class {t!r}; expected one of {', '.join(class_names)}.")
        raise ExplainError(f"A target must be a class name, an index or None, got {type(t).__name__}.")

    if isinstance(target, (list, tuple)):
        if len(target) != n:
            raise ExplainError(f"Expected {n} targets for a batch of {n} images, got {len(target)}.")
        return [one(t) for t in target]
    return [one(target)] * n


def _resolve_module(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise ExplainError(f"The model has no layer named {layer!r}.") from None


def _is_chain(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


# Models whose forward is exactly features -> pool -> flatten -> classifier, by defining module and
# class name: torchvision's, and models.efficientnet's copy of torchvision's EfficientNet-B0. The
# engine imports neither (importing torchvision costs 165 MB, and the engine imports nothing from
# models): an instance's class is loaded, so its module is in sys.modules when one is passed.
_CHAIN_MODELS: tuple[tuple[str, str], ...] = (
    ("torchvision.models.efficientnet", "EfficientNet"),
    ("torchvision.models.mobilenetv2", "MobileNetV2"),
    ("torchvision.models.mobilenetv3", "MobileNetV3"),
    ("models.efficientnet", "EfficientNet"),
)


def _is_known_chain_model(model: nn.Module) -> bool:
    """True when ``model``'s class is exactly one of :data:`_CHAIN_MODELS` (a subclass may change forward)."""
    cls = type(model)
    for module_name, class_name in _CHAIN_MODELS:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, class_name, None) is cls:
            return True
    return False


def _torchvision_head_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The part after ``features`` for torchvision's features/avgpool/classifier models (and our EfficientNet)."""
    if not _is_known_chain_model(model):
        return None
    features, classifier = model.get_submodule("features"), model.get_submodule("classifier")
    if not _is_chain(features):
        return None
    if type(model).__name__ == "MobileNetV2":  # no avgpool module: its forward pools functionally
        def head(x: torch.Tensor) -> torch.Tensor:
            return classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))
    else:
        avgpool = model.get_submodule("avgpool")

        def head(x: torch.Tensor) -> torch.Tensor:
            return classifier(torch.flatten(avgpool(x), 1))
    return head


def _linear_head(model: nn.Module, layer: str) -> nn.Linear | None:
    """The Linear of a head that is average pooling then one Linear, when ``layer`` feeds it directly.

    Then the gradient of class c's logit at every position of the layer's map is that Linear's
    weight for c over the map's area, so no backward pass is needed (Grad-CAM is CAM there: Zhou et
    al. 2016, Selvaraju et al. 2017, section 3.1). Only for eval mode, Dropouts beside the Linear,
    the last step of ``features``, and no hooks on the head that could change what it computes.
    """
    if model.training or not _is_known_chain_model(model) or type(model).__name__ == "MobileNetV2":
        return None
    features = model.get_submodule("features")
    if not isinstance(features, nn.Sequential) or not _is_chain(features) or layer != f"features.{len(features) - 1}":
        return None
    avgpool, classifier = model.get_submodule("avgpool"), model.get_submodule("classifier")
    parts = list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]
    linears = [m for m in parts if isinstance(m, nn.Linear)]
    if len(linears) != 1 or not all(isinstance(m, (nn.Linear, nn.Dropout)) for m in parts):
        return None
    if not isinstance(avgpool, nn.AdaptiveAvgPool2d) or avgpool.output_size not in (1, (1, 1)):
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in [model, avgpool, classifier, *parts]):
        return None
    return linears[0]


def _pool(output: Any, name: str) -> np.ndarray:
    """A layer's output averaged over its spatial dimensions, (N, C) float64, off the autograd graph."""
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        raise ExplainError(f"Layer {name!r} does not give an (N, C, ...) tensor to pool.")
    with torch.no_grad():
        kept = output.detach()
        if kept.ndim == 4:
            # The kernel the squeeze-and-excitation blocks run: in the middle of a forward pass it
            # costs a tenth of a general mean over two axes (about 20 against 100 microseconds).
            kept = F.adaptive_avg_pool2d(kept, 1).flatten(1)
        elif kept.ndim > 2:
            kept = kept.mean(tuple(range(2, kept.ndim)))
        if kept.dtype not in (torch.float32, torch.float64):
            kept = kept.float()
        return kept.numpy().astype(np.float64)


def _split(model: nn.Module, layer: str, taps: Sequence[str] = (), pooled: dict[str, np.ndarray] | None = None
           ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] | None:
    """Prefix (up to and including ``layer``) and suffix functions, when the model is a chain there.

    Each name in ``taps`` must be one of the steps the two functions run (an element of a chain
    on the way to ``layer``, or ``layer`` itself), else there is no split; its output, averaged
    over space, goes into ``pooled`` as it passes.
    """
    head = _torchvision_head_forward(model)
    parts = layer.split(".")
    if head is None or parts[0] != "features" or len(parts) < 2:
        return None
    # Walk down: every container on the way must be a plain chain so that order is execution order.
    path: list[tuple[nn.Sequential, int, str]] = []
    container: nn.Module = model.get_submodule("features")
    name = "features"
    for part in parts[1:]:
        if not isinstance(container, nn.Sequential) or not _is_chain(container):
            return None
        if not part.isdigit() or int(part) >= len(container):
            return None
        path.append((container, int(part), name))
        container = container[int(part)]
        name = f"{name}.{part}"
    steps = {f"{seq_name}.{j}" for seq, idx, seq_name in path for j in range(len(seq)) if j != idx}
    wanted = set(taps)
    if not wanted <= steps | {layer}:
        return None
    kept = pooled if pooled is not None else {}

    def run(module: nn.Module, step: str, x: torch.Tensor) -> torch.Tensor:
        x = module(x)
        if step in wanted:
            kept[step] = _pool(x, step)
        return x

    def prefix(x: torch.Tensor) -> torch.Tensor:
        for seq, idx, seq_name in path:
            for j, module in enumerate(list(seq)[:idx]):
                x = run(module, f"{seq_name}.{j}", x)
        return run(container, layer, x)

    def suffix(x: torch.Tensor) -> torch.Tensor:
        for seq, idx, seq_name in reversed(path):
            for j, module in enumerate(list(seq)[idx + 1:], start=idx + 1):
                x = run(module, f"{seq_name}.{j}", x)
        return head(x)

    return prefix, suffix


_copy_lock = threading.Lock()


def _private_copy(model: nn.Module) -> nn.Module:
    """A structural copy of the model sharing its weights, in eval mode, for hooks the original never sees."""
    with _copy_lock:
        memo: dict[int, Any] = {id(t): t for t in model.parameters()}
        memo.update({id(t): t for t in model.buffers()})
        clone = copy.deepcopy(model, memo)
    clone.eval()
    return clone


def _forward_with_hook(model: nn.Module, layer: str, x: torch.Tensor, taps: Sequence[str] = (),
                       pooled: dict[str, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations (as an autograd leaf) and logits for layers the chain split cannot reach.

    The outputs of the layers named in ``taps``, averaged over space, go into ``pooled``.
    """
    captured: list[torch.Tensor] = []
    kept = pooled if pooled is not None else {}

    def tap(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in kept:
                raise ExplainError(f"Layer {name!r} runs more than once per forward pass; it cannot be pooled.")
            kept[name] = _pool(output, name)
        return hook

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if captured:
            raise ExplainError(f"Layer {layer!r} runs more than once per forward pass; pick another layer.")
        leaf = output.detach().clone().requires_grad_(True)
        captured.append(leaf)
        torch.set_grad_enabled(True)  # from here on, record what follows the layer
        # A non-leaf view goes on, so in-place ops after the layer (residual adds) are allowed.
        return leaf.clone()

    handles = [_resolve_module(model, layer).register_forward_hook(hook)]
    handles.extend(_resolve_module(model, name).register_forward_hook(tap(name)) for name in taps)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in taps if name not in kept]
    if missing:
        raise ExplainError(f"Layer {missing[0]!r} did not run in the forward pass.")
    if not captured:
        raise ExplainError(f"Layer {layer!r} did not run in the forward pass.")
    if not isinstance(captured[0], torch.Tensor) or captured[0].ndim != 4:
        raise ExplainError(f"Layer {layer!r} does not give a (N, C, H, W) feature map.")
    return captured[0], logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of each row of float64 logits (N, K), shifted by the row's largest for stability."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _class_scores(acts: torch.Tensor, linear: nn.Linear) -> tuple[np.ndarray, np.ndarray] | None:
    """Every class's score at every position of the map (N, h, w, K) and the logits (N, K), float64.

    For a layer that feeds average pooling and one Linear (:func:`_linear_head`), a class's logit
    is the mean over the map of its score ``acts . weight[c]`` plus the bias, and the gradient of
    that logit at every position is ``weight[c]`` over the map's area. So the Grad-CAM map of class
    c, ``sum_k mean(grad_k) * acts_k``, is its score map over the area (CAM, Zhou et al. 2016), and
    one matrix product gives the logits and every class's map: the head's work, in float64, and no
    backward pass. A few numpy steps rather than a dozen torch ones, each of which costs tens of
    microseconds just after a forward pass. None for dtypes numpy does not hold (bfloat16).
    """
    if acts.dtype not in (torch.float32, torch.float64, torch.float16):
        return None
    n, c, h, w = acts.shape
    per_position = np.moveaxis(acts.detach().numpy(), 1, -1).reshape(n, h * w, c)  # a view when channels last
    weight = linear.weight.detach().numpy().astype(np.float64)
    scores = np.matmul(per_position.astype(np.float64), weight.T)  # (N, h*w, K)
    logits = scores.mean(axis=1)
    if linear.bias is not None:
        logits += linear.bias.detach().numpy().astype(np.float64)
    return scores.reshape(n, h, w, -1), logits


def _normalise(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU then per-image min-max of maps (N, h, w) to [0, 1], in float64 so maps of 1e-12 still span the range.

    Returns the maps as float32 and each map's maximum after the ReLU. A flat map becomes zeros.
    """
    cam = np.maximum(raw, 0.0)
    flat = cam.reshape(cam.shape[0], -1)
    lo = flat.min(axis=1)[:, None, None]
    hi = flat.max(axis=1)[:, None, None]
    span = hi - lo
    norm = np.where(span > 0, (cam - lo) / np.where(span > 0, span, 1.0), 0.0)
    return norm.astype(np.float32), hi.reshape(-1)


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """One map in [0, 1] (h, w) bilinearly to (size, size), pixel centres aligned, then onto [0, 1] again.

    OpenCV's bilinear resize takes the same half-pixel centres and edge clamping as
    ``F.interpolate(..., align_corners=False)``. The upsampled map's range shrinks a little
    (pixel centres miss the coarse cells' centres), so it is stretched back, a linear map that
    leaves correlations unchanged; in float32, the spans being near 1. A flat map becomes zeros.
    """
    cam = np.asarray(cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    lo, hi = cv2.minMaxLoc(cam)[:2]
    if hi <= lo:
        return np.zeros_like(cam)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    cam -= lo32
    cam /= hi32 - lo32  # the peak's own float32 difference, so it becomes exactly 1
    return cam


def explain(classifier: Explainable, images: Sequence[Any], *, method: str = "gradcam",
            target: Any = None, layer: str | None = None, batch_size: int = 16, pooled: Sequence[str] = (),
            input_summary: Callable[[torch.Tensor], np.ndarray] | None = None) -> list[Explanation]:
    """Predict and explain each image; the result for a batch equals the results one at a time.

    ``images``: RGB uint8 arrays or PIL images. ``target``: None (the predicted class), a class
    name or index for all images, or a list with one per image.

    ``pooled``: names of layers whose outputs, averaged over space, each explanation keeps in
    ``.pooled`` (float64, one value per channel), taken from the same forward pass.
    ``input_summary``: a function of one image's preprocessed input (C, S, S), whose result
    each explanation keeps in ``.input_summary``. Neither changes the maps or the probabilities.

    Raises:
        ExplainError: an unknown method, layer or target, or a layer in ``pooled`` that the
            model has not, that does not run or runs more than once in a forward pass.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    images = list(images)
    method = _canonical_method(method)
    layer = layer or classifier.target_layer
    targets = resolve_targets(classifier.class_names, target, len(images))
    model = classifier.model
    _resolve_module(model, layer)
    taps = tuple(dict.fromkeys(pooled))
    for name in taps:
        _resolve_module(model, name)
    results: list[Explanation] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        x = classifier.preprocess(chunk)
        results.extend(_explain_batch(classifier, model, x, targets[start:start + batch_size], method, layer,
                                      taps, input_summary))
    return results


def _summaries(x: torch.Tensor, input_summary: Callable[[torch.Tensor], np.ndarray] | None
               ) -> list[np.ndarray | None]:
    if input_summary is None:
        return [None] * x.shape[0]
    with torch.inference_mode():
        return [np.asarray(input_summary(x[i])) for i in range(x.shape[0])]


def _explain_batch(classifier: Explainable, model: nn.Module, x: torch.Tensor,
                   targets: list[int | None], method: str, layer: str, taps: tuple[str, ...] = (),
                   input_summary: Callable[[torch.Tensor], np.ndarray] | None = None) -> list[Explanation]:
    summaries = _summaries(x, input_summary)
    pooled: dict[str, np.ndarray] = {}
    split = None if model.training else _split(model, layer, taps, pooled)
    linear = None if split is None else _linear_head(model, layer)
    if split is not None and linear is not None and method == "gradcam":
        with torch.inference_mode():
            acts = split[0](x)
        scores = _class_scores(acts, linear)
        if scores is not None:
            class_maps, logit_values = scores
            _check_outputs(logit_values.shape, classifier.class_names)
            probs = _softmax(logit_values)
            predicted = probs.argmax(axis=1).tolist()
            chosen = [p if t is None else t for t, p in zip(targets, predicted, strict=True)]
            raw = class_maps[np.arange(len(chosen)), :, :, chosen] / (acts.shape[2] * acts.shape[3])
            return _explanations(classifier, method, layer, raw, logit_values, probs, predicted, chosen,
                                 pooled, taps, summaries)
    grad_was = torch.is_grad_enabled()
    # inference_mode(False): explaining still works when a caller is inside inference mode.
    with torch.inference_mode(False):
        try:
            if split is not None:
                prefix, suffix = split
                pooled.clear()
                with torch.inference_mode():
                    acts = prefix(x)
                    if linear is not None:
                        logits = suffix(acts)
                if linear is None:
                    # Inference tensors cannot enter autograd; a copy of one layer's output is cheap.
                    acts = acts.clone().requires_grad_(True)
                    with torch.enable_grad():
                        logits = suffix(acts)
            else:
                # Hooks go on a private copy that shares the weights, never on the shared model.
                acts, logits = _forward_with_hook(_private_copy(model), layer, x, taps, pooled)
            _check_outputs(tuple(logits.shape), classifier.class_names)
            logit_values = logits.detach().double().numpy()
            probs = _softmax(logit_values)
            predicted = probs.argmax(axis=1).tolist()
            chosen = [p if t is None else t for t, p in zip(targets, predicted, strict=True)]
            index = torch.tensor(chosen, dtype=torch.long)
            if linear is not None:
                with torch.inference_mode():
                    area = acts.shape[2] * acts.shape[3]
                    # In float64 already and expanded (not copied): the methods take float64 gradients.
                    grads = (linear.weight[index].double() / area)[:, :, None, None].expand(acts.shape)
            else:
                with torch.enable_grad():
                    score = logits.gather(1, index.view(-1, 1)).sum()
                    (grads,) = torch.autograd.grad(score, acts)
        finally:
            torch.set_grad_enabled(grad_was)
    with torch.no_grad():
        raw = METHODS[method](acts.detach().double(), grads.double()).numpy()
    return _explanations(classifier, method, layer, raw, logit_values, probs, predicted, chosen, pooled, taps,
                         summaries)


def _check_outputs(shape: tuple[int, ...], class_names: Sequence[str]) -> None:
    if len(shape) != 2 or shape[1] != len(class_names):
        raise ExplainError(f"The model gives {tuple(shape)} outputs; expected (N, {len(class_names)}).")


def _explanations(classifier: Explainable, method: str, layer: str, raw: np.ndarray, logit_values: np.ndarray,
                  probs: np.ndarray, predicted: list[int], chosen: list[int], pooled: dict[str, np.ndarray],
                  taps: tuple[str, ...], summaries: list[np.ndarray | None]) -> list[Explanation]:
    """One Explanation per image from the raw maps (N, h, w) and the float64 logits and probabilities."""
    low, raw_max = _normalise(raw)
    names = classifier.class_names
    out: list[Explanation] = []
    for i in range(raw.shape[0]):
        p = probs[i].tolist()
        zero = not bool(low[i].max() > 0)
        out.append(Explanation(
            prediction=names[predicted[i]],
            confidence=float(p[predicted[i]]),
            probabilities={n: float(v) for n, v in zip(names, p, strict=True)},
            target=names[chosen[i]],
            cam=_upsample(low[i], classifier.input_size),
            method=method,
            layer=layer,
            cam_lowres=low[i].copy(),
            logits=tuple(logit_values[i].tolist()),
            raw_max=float(raw_max[i]),
            is_zero=zero,
            pooled={name: pooled[name][i].copy() for name in taps} if taps else None,
            input_summary=summaries[i],
        ))
    return out
