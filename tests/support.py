"""Plain helpers the tests share: paths to the test data, and small seeded models built here.

Fixtures live in ``conftest.py``; this module holds functions and constants only, so that a test
module never imports another test module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CSDI = DATA / "csdi"  # real fundus photographs, CC BY 4.0: attribution in its README.md


def seeded_model(seed: int = 0, head=2, *, calibrate: bool = True):
    """A seeded random EfficientNet-B0; ``calibrate`` measures BatchNorm statistics on images."""
    from models import build_model

    torch.manual_seed(seed)
    model = build_model(head)
    if not calibrate:
        return model.eval()
    # Default BatchNorm statistics (mean 0, var 1) shrink activations ~50x per stage down to
    # 1e-13; statistics measured on images keep them at unit scale, as in a trained model.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        x = torch.from_numpy(np.stack(make_images(seed + 100))).permute(0, 3, 1, 2).float() / 255
        model((x - 0.45) / 0.225)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
        # With signed random head weights one class's map is often ReLU'd to nothing; positive
        # weights give every class a map with structure to compare.
        last = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.abs_()
    return model.eval()


def make_images(seed: int = 7) -> list[np.ndarray]:
    """Eight different 224x224 RGB images with structure (blobs at different places), not noise."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:224, 0:224]
    for _ in range(8):
        img = np.zeros((224, 224, 3), np.float32)
        for _ in range(3):
            cy, cx, r = rng.uniform(30, 194), rng.uniform(30, 194), rng.uniform(15, 45)
            colour = rng.uniform(0, 255, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - blob) + colour * blob
        img += rng.normal(0, 8, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def non_eye_pictures() -> list[np.ndarray]:
    """Ordinary photographs that are not eyes (shipped inside matplotlib), whole and three crops of each."""
    import matplotlib

    from components.imaging import load_rgb

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    out = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        image = load_rgb(folder / name)
        h, w = image.shape[:2]
        out.append(image)
        for fy, fx in ((0.0, 0.0), (0.3, 0.2), (0.5, 0.5)):
            y0, x0 = int(fy * h / 2), int(fx * w / 2)
            out.append(np.ascontiguousarray(image[y0:y0 + h // 2, x0:x0 + w // 2]))
    return out
