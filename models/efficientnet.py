"""EfficientNet-B0 (Tan and Le 2019) in plain torch, laid out exactly as torchvision's ``efficientnet_b0``.

Why not torchvision's own: importing ``torchvision.models`` pulls in ``torchvision.ops``, and
through it ``torch._dynamo``, sympy, triton and ``torch.distributed``: about 165 MB of resident
memory and a second of start-up for every process that only wants to run one network
(docs/MEMORY.md). This module imports nothing but torch.

The layout is torchvision's, module for module, so checkpoints (ours, torchvision's ImageNet
weights, anyone's ``efficientnet_b0().state_dict()``) load unchanged and layer names such as
``features.8`` mean the same thing; ``tests/test_efficientnet.py`` compares the two, key by key
and output by output, against the installed torchvision:

- ``features.0``: stem, 3x3 convolution with stride 2 to 32 channels, BatchNorm, SiLU;
- ``features.1`` .. ``features.7``: the seven stages of mobile inverted bottlenecks (MBConv),
  each ``.block``: 1x1 expansion (not when the ratio is 1), depthwise convolution,
  squeeze-and-excitation (``fc1``/``fc2`` 1x1 convolutions, squeezed to a quarter of the
  block's *input* channels), 1x1 projection without activation; a residual connection with
  stochastic depth where the shape allows;
- ``features.8``: 1x1 convolution 320 -> 1280, BatchNorm, SiLU;
- ``avgpool``, then ``classifier``: Dropout and Linear.

BatchNorm keeps torch's defaults (eps 1e-5, momentum 0.1), convolutions pad by half the kernel,
and in training mode block ``i`` of 16 drops its residual branch per sample with probability
``0.2 * i / 16``. The initial weights are drawn in the same order from the same distributions, so
a seeded run starts from the same weights as it did with torchvision.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ConvBNAct", "EfficientNet", "MBConv", "SqueezeExcitation", "StochasticDepth", "efficientnet_b0"]

# One row per stage: (expansion ratio, kernel, stride of its first block, in channels, out channels, blocks).
# Table 1 of the paper; B0 has width and depth multipliers of 1, so no channel is rounded.
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280  # four times the last stage's 320


class ConvBNAct(nn.Sequential):
    """Convolution (no bias), BatchNorm, and an activation unless ``act`` is False: children 0, 1, 2.

    A plain ``nn.Sequential`` underneath, so the Grad-CAM chain split can walk into it.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gates from the pooled map: pool, 1x1 down (``fc1``), SiLU, 1x1 up (``fc2``), sigmoid."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return gate * x


class StochasticDepth(nn.Module):
    """In training, zero a whole sample's residual branch with probability ``p`` and scale survivors by 1/(1-p).

    ``mode`` is "row" (one draw per sample) or "batch" (one draw for the batch). Identity in eval
    mode and when ``p`` is 0, without drawing a random number, so the random stream is unchanged.
    """

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"A drop probability is between 0 and 1, not {p}.")
        if mode not in ("row", "batch"):
            raise ValueError(f"Stochastic depth's mode is 'row' or 'batch', not {mode!r}.")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation; residual when stride 1 keeps the channels."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, drop: float) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"An MBConv block's stride is 1 or 2, not {stride}.")
        self.use_res_connect = stride == 1 and cin == cout
        wide = cin * expand
        layers: list[nn.Module] = []
        if wide != cin:
            layers.append(ConvBNAct(cin, wide, 1))
        layers.append(ConvBNAct(wide, wide, kernel, stride=stride, groups=wide))
        layers.append(SqueezeExcitation(wide, max(1, cin // 4)))
        layers.append(ConvBNAct(wide, cout, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop, "row")
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x
        return out


class EfficientNet(nn.Module):
    """EfficientNet-B0: ``features`` (stem, seven MBConv stages, head convolution), ``avgpool``, ``classifier``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, STEM_CHANNELS, 3, stride=2)]
        total = sum(stage[5] for stage in B0_STAGES)
        index = 0
        for expand, kernel, stride, cin, cout, blocks in B0_STAGES:
            stage: list[nn.Module] = []
            for i in range(blocks):
                first = i == 0
                stage.append(MBConv(cin if first else cout, cout, expand, kernel, stride if first else 1,
                                    stochastic_depth_prob * index / total))
                index += 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(B0_STAGES[-1][4], HEAD_CHANNELS, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # Any head may replace it (models.classifier builds the checkpoint's own).
        self.classifier: nn.Module = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                                   nn.Linear(HEAD_CHANNELS, num_classes))
        self._initialise()

    def _initialise(self) -> None:
        # He-normal (fan out) convolutions, unit BatchNorm, Linear uniform in +-1/sqrt(outputs), zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """A randomly initialised EfficientNet-B0 (no weights are downloaded: load a state dict)."""
    return EfficientNet(num_classes=num_classes, dropout=dropout, stochastic_depth_prob=stochastic_depth_prob)
