"""What the software needs of a classifier, as a protocol: ``models.Classifier`` is one, a test's stand-in another.

The engine, the workflows, the report and the exports type their classifier with these, never
``Any``, so a missing attribute is a type error and not a ``getattr`` default at run time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

__all__ = ["ClassifierLike", "Explainable"]


class Explainable(Protocol):
    """What a class activation map needs: the network, its classes, its input and the layer to explain."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def input_size(self) -> int: ...

    @property
    def target_layer(self) -> str: ...

    @property
    def mean(self) -> tuple[float, float, float]: ...

    @property
    def std(self) -> tuple[float, float, float]: ...

    def preprocess(self, images: Any) -> torch.Tensor: ...


class ClassifierLike(Explainable, Protocol):
    """A screening classifier as the workflows, the report and the exports use it."""

    @property
    def name(self) -> str: ...

    @property
    def weights_sha256(self) -> str: ...

    @property
    def card(self) -> Mapping[str, Any]: ...

    @property
    def threshold(self) -> float: ...

    @property
    def positive_index(self) -> int | None: ...

    @property
    def is_demo(self) -> bool: ...

    @property
    def typicality(self) -> Mapping[str, Any] | None: ...

    def predict_proba(self, images: Sequence[Any]) -> np.ndarray: ...
