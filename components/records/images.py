"""The image folder: photographs as metadata-free PNGs named by their SHA-256, written durably."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from components.base.files import atomic_write_bytes
from components.imaging.loading import ImageError, encode_png, load_rgb, sha256_bytes
from components.records.errors import NotFound, RecordsError, ValidationError, storage_error
from components.records.settings import ensure_folder
from components.records.validation import sha256_hex

__all__ = ["ImageFolder", "fsync_folder", "png_bytes"]


def png_bytes(pixels: np.ndarray) -> bytes:
    """RGB uint8 pixels as a PNG with no metadata chunks; ValidationError for other pixels."""
    try:
        return encode_png(pixels)
    except ImageError as error:
        raise ValidationError(str(error)) from None


def fsync_folder(folder: Path) -> None:
    """Make the names in ``folder`` durable."""
    # A rename is durable only once the folder that holds it is synced; Windows cannot open folders.
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ImageFolder:
    """Content-addressed PNG files: ``<root>/<first two hex digits>/<sha256>.png``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the image with this digest is (or would be) stored."""
        return self.root / sha256[:2] / f"{sha256}.png"

    def put(self, png: bytes) -> str:
        """Store the PNG bytes under their SHA-256 (once, whoever refers to them); return it.

        Raises:
            StorageError: the folder is full, read-only or cannot be written; no file is left behind.
        """
        return self.put_new(png)[0]

    def put_new(self, png: bytes) -> tuple[str, bool]:
        """Like :meth:`put`, and whether this call created the file (so a failed insert may remove it).

        Raises:
            StorageError: the folder is full, read-only or cannot be written; no file is left behind.
        """
        sha256 = sha256_bytes(png)
        path = self.path(sha256)
        if path.is_file():
            return sha256, False
        try:
            new_folder = not path.parent.is_dir()
            ensure_folder(path.parent)
            atomic_write_bytes(path, png)
            # The row naming this file commits next, so the name must first survive a power cut.
            fsync_folder(path.parent)
            if new_folder:
                fsync_folder(path.parent.parent)
        except OSError as error:
            # atomic_write_bytes removed its temporary file; a renamed but unsynced file goes too.
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                if new_folder:
                    path.parent.rmdir()
            raise storage_error(error) from None
        return sha256, True

    def discard(self, sha256: str) -> None:
        """Remove a stored file that no row names (the insert that would have named it failed)."""
        path = self.path(sha256_hex(sha256, "an image digest"))
        try:
            path.unlink(missing_ok=True)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()  # the folder this photograph opened, so nothing at all is left
        except OSError:
            # A folder that refused the row may refuse the removal too; the file is then unreferenced,
            # content-addressed and harmless, and the caller's error says nothing was saved.
            return

    def read(self, sha256: str) -> bytes:
        """The stored PNG bytes with this SHA-256, checked against it.

        Raises:
            ValidationError: not a digest.
            NotFound: no such file.
            RecordsError: the file does not match its name.
        """
        sha256 = sha256_hex(sha256, "an image digest")
        try:
            png = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound("no stored image has this SHA-256; the image folder is incomplete") from None
        if sha256_bytes(png) != sha256:
            raise RecordsError("a stored image file does not match its SHA-256 name; the file is damaged")
        return png

    def delete(self, sha256: str) -> None:
        """Remove the image with this SHA-256, if stored, durably."""
        path = self.path(sha256_hex(sha256, "an image digest"))
        path.unlink(missing_ok=True)
        if path.parent.is_dir():
            fsync_folder(path.parent)

    def get(self, sha256: str) -> np.ndarray:
        """The stored image with this SHA-256 as RGB uint8; a file that fails its digest is refused."""
        return load_rgb(self.read(sha256))
