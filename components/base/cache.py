"""A least-recently-used cache bounded by the bytes its values hold, shared safely between threads."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import fields, is_dataclass
from typing import Generic, TypeVar

import numpy as np

__all__ = ["BoundedCache", "held_bytes"]

K = TypeVar("K", bound=Hashable)

V = TypeVar("V")


def held_bytes(value: object) -> int:
    """About how many bytes a cached value holds: its arrays, byte strings and text, with their containers.

    Counts what dominates a cache's memory (pixels, maps, encoded pictures); a callable or any
    other object counts only its own size.
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return sys.getsizeof(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        return sys.getsizeof(value) + sum(held_bytes(v) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(held_bytes(k) + held_bytes(v) for k, v in value.items())
    if is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(held_bytes(getattr(value, f.name)) for f in fields(value))
    return sys.getsizeof(value)


class BoundedCache(Generic[K, V]):
    """A least-recently-used mapping holding at most ``max_bytes`` (as ``sizeof`` counts them), safe between threads.

    A value larger than the whole budget is not stored at all.

    Raises:
        TypeError: ``max_bytes`` is not an integer.
        ValueError: ``max_bytes`` is below 1.
    """

    def __init__(self, max_bytes: int, *, sizeof: Callable[[V], int] = held_bytes) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an integer, got {type(max_bytes).__name__}.")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}.")
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: K, value: V) -> None:
        """Store ``value``, dropping the least recently used entries until the total fits."""
        size = max(1, int(self._sizeof(value)))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._held -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._held += size
            while self._held > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._held -= dropped

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._held = 0

    @property
    def held(self) -> int:
        """Bytes held now, as ``sizeof`` counted them when each entry was stored."""
        with self._lock:
            return self._held

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items
