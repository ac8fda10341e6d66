"""Returning freed pixel buffers to the system at once, so that a server's memory falls back after each photograph."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD", "release_large_buffers"]

MMAP_THRESHOLD = 1 << 20
"""Allocations of at least this many bytes get their own pages, handed back to the system when freed."""

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; returns whether it was set (False off glibc).

    glibc raises the threshold after each large free (up to 32 MB), after which decoded
    photographs, Pillow's 16 MB blocks and maps are carved from per-thread heaps that keep the
    memory once freed. Streamlit runs each page run on its own thread: the review's steps for
    three 40-megapixel PNGs, each on its own thread, left a process 434 MiB above where it
    started, and 251 MiB with the threshold fixed (see docs/MEMORY.md).
    Call it once, at start, before the large allocations.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
