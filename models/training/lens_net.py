"""Training the learned lens finder on rendered eyes with real-photograph variation, seeded, in minutes on a CPU.

    python -m models.training.lens_net [--renders 3000] [--steps 2400] [--seed 0] [--out models/weights/lens_finder.pt]

Render seeds 5_000_000 + i (256x192) give the eyes; each is used twice, varied by
``models.training.variation.vary`` with seeds 2i and 2i + 1, and one in five of the first copies is left as
rendered. Seven in ten of the second copies are cut down to a window around the iris, as the
finder's second look sees it (:func:`_iris_crop`). One sample in twelve is a negative: a window
of the photograph that holds no iris (or a flat card), whose target is empty, so the net learns
to say nothing where there is no eye.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from components.base.files import atomic_write_bytes
from components.lens.net import CROP_SCALE, CROP_SIDE, INPUT_SIDE, LENS_FINDER_PATH, LensNet, to_input
from models.synthetic import render_eye
from models.training.variation import vary

__all__ = ["make_samples", "train_lens_net"]

RENDER_SEED = 5_000_000
GRID = INPUT_SIDE // 2


def _target(masks: dict[str, np.ndarray]) -> np.ndarray:
    out = np.empty((2, GRID, GRID), np.float32)
    for i, name in enumerate(("pupil", "iris")):
        out[i] = cv2.resize((masks[name] > 0).astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA)
    return out


def _negative(rng: np.random.Generator, image: np.ndarray, iris: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    for _ in range(20):
        side = int(rng.uniform(0.25, 0.45) * min(h, w))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if not (iris[y0:y0 + side, x0:x0 + side] > 0).any():
            return np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
    card = np.full((64, 64, 3), rng.integers(0, 256, 3), np.uint8)
    return np.clip(card + rng.normal(0, 6, card.shape), 0, 255).astype(np.uint8)


def _iris_crop(rng: np.random.Generator, image: np.ndarray,
               masks: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A square window around the iris, as the finder's second look takes it, with its scale and place jittered.

    The finder crops ``CROP_SCALE`` iris radii around the iris its first look found; the window
    here spans 0.7-1.4 times that and is shifted by up to a fifth of its side, so the second look
    learns to outline a pupil that its first look placed roughly.
    """
    ys, xs = np.nonzero(masks["iris"])
    if xs.size < 20:
        return image, masks
    cx, cy, r = float(xs.mean()), float(ys.mean()), math.sqrt(xs.size / math.pi)
    side = max(8.0, 2 * r * CROP_SCALE * float(rng.uniform(0.7, 1.4)))
    cx += float(rng.uniform(-0.2, 0.2)) * side
    cy += float(rng.uniform(-0.2, 0.2)) * side
    out = CROP_SIDE
    scale = out / side
    m = np.array([[scale, 0, out / 2 - cx * scale], [0, scale, out / 2 - cy * scale]], np.float32)
    crop = cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = {k: cv2.warpAffine(v, m, (out, out), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=0) for k, v in masks.items()}
    return crop, moved


def make_samples(renders: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 96, 96, 3) uint8 and targets (N, 2, 48, 48) float32 (pupil and iris shares per cell)."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for i in range(renders):
        eye = render_eye(RENDER_SEED + i, size=(256, 192))
        for j in range(2):
            v = vary(eye.image, eye.masks, 2 * i + j, only=() if j == 0 and rng.uniform() < 0.2 else None)
            image, masks = v.image, v.masks
            if j == 1 and rng.uniform() < 0.7:
                image, masks = _iris_crop(rng, image, masks)
            target = _target(masks)
            if rng.uniform() < 1 / 12:
                image, target = _negative(rng, v.image, v.masks["iris"]), np.zeros_like(target)
            interp = cv2.INTER_AREA if min(image.shape[:2]) >= INPUT_SIDE else cv2.INTER_LINEAR
            images.append(cv2.resize(image, (INPUT_SIDE, INPUT_SIDE), interpolation=interp))
            targets.append(target)
    return np.stack(images), np.stack(targets)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits[:, 0])
    t = target[:, 0]
    inter = (p * t).sum((1, 2))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + t.sum((1, 2)) + 1)
    return bce + 0.5 * dice.mean()


def train_lens_net(images: np.ndarray, targets: np.ndarray, *, steps: int, seed: int = 0,
                   batch_size: int = 32, lr: float = 3e-3) -> tuple[LensNet, dict[str, float]]:
    """Train for ``steps`` batches (cosine schedule), mirroring at random; the same inputs give the same net."""
    torch.manual_seed(seed)
    # Early in training many activations underflow to subnormal floats, which the CPU handles
    # about six times slower (measured: 3 s a step instead of 0.45); they are flushed to zero.
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(seed + 1)
    net = LensNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x_all = to_input(list(images))
    y_all = torch.from_numpy(targets)
    started = time.monotonic()
    step, total, losses = 0, steps, []
    net.train()
    while True:
        idx = rng.choice(len(images), batch_size, replace=False)
        x, y = x_all[idx], y_all[idx]
        if rng.uniform() < 0.5:
            x, y = x.flip(3), y.flip(3)
        progress = step / total
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        opt.zero_grad(set_to_none=True)
        loss = _loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            print(f"step {step}/{total}: loss {np.mean(losses[-100:]):.4f}", file=sys.stderr, flush=True)
        if step >= total:
            break
    return net.eval(), {"steps": step, "final_loss": float(np.mean(losses[-100:])),
                        "minutes": round((time.monotonic() - started) / 60, 2)}


def main(argv: list[str] | None = None) -> int:
    """Render, vary, train and save the lens finder's weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--renders", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(LENS_FINDER_PATH))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t = time.monotonic()
    images, targets = make_samples(args.renders, args.seed)
    print(f"{len(images)} samples in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    net, record = train_lens_net(images, targets, steps=args.steps, seed=args.seed)
    import io

    buffer = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "width": 16, "input_side": INPUT_SIDE,
                "trained": {"renders": args.renders, "seed": args.seed, "render_seeds_from": RENDER_SEED, **record}},
               buffer)
    atomic_write_bytes(Path(args.out), buffer.getvalue())
    print(f"saved {args.out}: {record}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
