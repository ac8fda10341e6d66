"""The prototype's Python API, kept working: a thin facade over ``models`` and ``components``.

    from gradcam_visualization import visualize_gradcam, batch_visualize
    result = visualize_gradcam("eye.jpg")            # saves gradcam_eye.jpg
    results = batch_visualize(["a.jpg", "b.jpg"], output_dir="gradcam_results")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from components.explanation.cam import explain
from components.explanation.overlay import blend, colorize, resize_map, three_panel
from components.imaging.loading import decode_image
from components.workflows.batch import explain_files, panel_caption, save_jpeg
from models import Classifier, load_classifier

__all__ = ["batch_visualize", "load_model", "overlay_heatmap", "visualize_gradcam"]

_cache: dict[tuple[str, int, int], Classifier] = {}
_cache_lock = threading.Lock()


def load_model(model_path: str | os.PathLike[str] | None = None) -> Classifier:
    """Load (once per file version) the classifier; ``None`` is the shipped demo model."""
    from models.classifier import DEMO_MODEL_PATH

    path = Path(model_path) if model_path is not None else DEMO_MODEL_PATH
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return load_classifier(model_path)  # raises the clear "missing" error
    with _cache_lock:
        if key not in _cache:
            _cache.clear()  # keep one model: a long session switching files should not pile them up
            _cache[key] = load_classifier(path)
        return _cache[key]


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5,
                    colormap: str | int = cv2.COLORMAP_JET) -> np.ndarray:
    """The prototype's overlay: ``cam`` coloured and blended over ``image``, RGB uint8 at the image's size.

    ``image`` is RGB uint8 (H, W, 3); ``cam`` a float map in [0, 1] of any size (it is resized to
    the image). ``colormap`` is OpenCV's ``cv2.COLORMAP_*`` constant, as in the prototype, or a
    name in ``components.explanation.overlay.COLORMAPS``; ``alpha`` is the heatmap's weight. The constants
    of the colormaps the dashboard offers (jet, turbo, hot, ...) give exactly its colours.
    """
    return blend(image, cam, alpha=alpha, colormap=colormap)


def _display_available() -> bool:
    import matplotlib

    backend = matplotlib.get_backend().lower()
    return not any(name in backend for name in ("agg", "pdf", "svg", "ps", "cairo", "template"))


def _show(panel: np.ndarray, title: str) -> None:
    if not _display_available():
        return
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 5))
    plt.imshow(panel)
    plt.axis("off")
    plt.title(title)
    plt.show()
    plt.close(fig)


def visualize_gradcam(image_path: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None,
                      save_path: str | os.PathLike[str] | None = None, show: bool = True, *,
                      alpha: float = 0.5, colormap: str = "jet", method: str = "gradcam",
                      target_class: str | int | None = None) -> dict[str, Any]:
    """Predict one eye image and explain it with a class activation map.

    Returns ``prediction``, ``confidence``, ``probabilities``, ``cam`` (float in [0, 1] at the
    image's own size), ``heatmap`` and ``overlay`` (RGB uint8, the image's own size),
    ``save_path`` (the three-panel JPEG, by default ``gradcam_<stem>.jpg`` in the working
    folder), plus ``target``, ``method`` and ``layer``. ``show`` displays the panels only where a
    display exists.
    """
    classifier = load_model(model_path)
    decoded = decode_image(image_path)
    image = decoded.pixels
    ex = explain(classifier, [image], method=method, target=target_class)[0]
    h, w = image.shape[:2]
    cam = resize_map(ex.cam, (w, h))
    heatmap = colorize(cam, colormap)
    overlay = blend(image, cam, alpha=alpha, colormap=colormap)
    if save_path is None:
        save_path = Path.cwd() / f"gradcam_{Path(image_path).stem}.jpg"
    panel = three_panel(image, ex.cam, alpha=alpha, colormap=colormap, caption=panel_caption(ex))
    save_jpeg(panel, Path(save_path))
    if show:
        _show(panel, panel_caption(ex))
    return {
        "prediction": ex.prediction,
        "confidence": ex.confidence,
        "probabilities": dict(ex.probabilities),
        "cam": cam,
        "heatmap": heatmap,
        "overlay": overlay,
        "save_path": str(save_path),
        "target": ex.target,
        "method": ex.method,
        "layer": ex.layer,
    }


def batch_visualize(image_paths: Sequence[str | os.PathLike[str]],
                    output_dir: str | os.PathLike[str] = "gradcam_results",
                    model_path: str | os.PathLike[str] | None = None, **options: Any) -> list[dict[str, Any]]:
    """Explain many images, writing ``<output_dir>/gradcam_<stem>.jpg`` for each.

    Returns one dict per input, in order: ``image_path``, ``prediction``, ``confidence``,
    ``probabilities``, ``target``, ``method``, ``layer``, ``save_path`` and ``error`` (None, or
    one sentence saying why that image failed; a bad image never stops the batch). Options:
    ``alpha``, ``colormap``, ``method``, ``target_class``, ``layer``, ``workers``.
    """
    classifier = load_model(model_path)
    target = options.pop("target_class", options.pop("target", None))
    known = {"alpha", "colormap", "method", "layer", "workers", "batch_size"}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"Unknown option(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}.")
    results = []
    for item in explain_files(classifier, list(image_paths), out_dir=Path(output_dir), target=target, **options):
        ex = item.explanation
        results.append({
            "image_path": item.file,
            "prediction": ex.prediction if ex else None,
            "confidence": ex.confidence if ex else None,
            "probabilities": dict(ex.probabilities) if ex else None,
            "target": ex.target if ex else None,
            "method": ex.method if ex else None,
            "layer": ex.layer if ex else None,
            "save_path": str(item.panel_path) if item.panel_path else None,
            "error": item.error,
        })
    return results
