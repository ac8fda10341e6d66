"""Photographs in S3-compatible object storage, so that app replicas share them; chosen by the environment."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from components.base import config
from components.base.s3 import S3Settings, s3_client
from components.imaging.loading import load_rgb, sha256_bytes
from components.records.errors import NotFound, RecordsError, StorageError, ValidationError
from components.records.images import ImageFolder
from components.records.validation import sha256_hex

__all__ = ["ImageStore", "S3Images", "image_store"]

_PREFIX: Final = "images/"


class ImageStore(Protocol):
    """Where photographs live: content-addressed PNG bytes, put once, read back checked."""

    def put(self, png: bytes) -> str: ...
    def put_new(self, png: bytes) -> tuple[str, bool]: ...
    def discard(self, sha256: str) -> None: ...
    def read(self, sha256: str) -> bytes: ...
    def get(self, sha256: str) -> np.ndarray: ...
    def delete(self, sha256: str) -> None: ...


class S3Images:
    """PNG objects ``images/<first two hex digits>/<sha256>.png`` in one bucket.

    Credentials come the usual boto3 way (environment, profile, instance role); the endpoint may
    point at any S3-compatible service (MinIO, Ceph, a cloud provider).
    """

    def __init__(self, bucket: str, *, settings: S3Settings | None = None, client: Any = None) -> None:
        if not isinstance(bucket, str) or not bucket.strip():
            raise ValidationError("the S3 bucket must be named")
        self.bucket = bucket
        self._client = client if client is not None else s3_client(settings or S3Settings.configured())

    @staticmethod
    def key(sha256: str) -> str:
        """The object key of the image with this digest."""
        return f"{_PREFIX}{sha256[:2]}/{sha256}.png"

    def _missing(self, error: Exception) -> bool:
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, png: bytes) -> str:
        """Store the PNG bytes under their SHA-256, once; return it."""
        return self.put_new(png)[0]

    def put_new(self, png: bytes) -> tuple[str, bool]:
        """Like :meth:`put`, and whether this call created the object (so a failed insert may remove it).

        Raises:
            StorageError: the bucket cannot be written.
        """
        sha256 = sha256_bytes(png)
        key = self.key(sha256)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
            return sha256, False
        except Exception as error:
            if not self._missing(error):
                raise StorageError("the image bucket could not be read, so nothing was saved") from None
        try:
            # The object is whole once put_object returns, so the row naming it may commit after.
            self._client.put_object(Bucket=self.bucket, Key=key, Body=png, ContentType="image/png")
        except Exception:
            raise StorageError("the image bucket could not be written, so nothing was saved") from None
        return sha256, True

    def discard(self, sha256: str) -> None:
        """Remove an object no row names (the insert that would have named it failed); errors are ignored."""
        with contextlib.suppress(Exception):
            self.delete(sha256)

    def read(self, sha256: str) -> bytes:
        """The stored PNG bytes, checked against their digest.

        Raises:
            ValidationError: not a digest.
            NotFound: no such object.
            RecordsError: the object does not match its name.
        """
        sha256 = sha256_hex(sha256, "an image digest")
        try:
            png = bytes(self._client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"].read())
        except Exception as error:
            if self._missing(error):
                raise NotFound("no stored image has this SHA-256; the image bucket is incomplete") from None
            raise RecordsError("the image bucket could not be read") from None
        if sha256_bytes(png) != sha256:
            raise RecordsError("a stored image object does not match its SHA-256 name; it is damaged")
        return png

    def get(self, sha256: str) -> np.ndarray:
        """The stored image as RGB uint8."""
        return load_rgb(self.read(sha256))

    def delete(self, sha256: str) -> None:
        """Remove the image with this digest, if stored."""
        self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256_hex(sha256, "an image digest")))

    def keys(self) -> list[str]:
        """Every image key in the bucket."""
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=_PREFIX)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def image_store(folder: Path) -> ImageFolder | S3Images:
    """The configured image store: $CATARACT_CAM_IMAGE_STORE "folder" (default, ``folder``) or "s3".

    Raises:
        ValidationError: an unknown store, or "s3" without $CATARACT_CAM_S3_BUCKET.
    """
    try:
        kind = config.choice(config.IMAGE_STORE)
    except config.ConfigError as error:
        raise ValidationError(str(error)) from None
    if kind == "folder":
        return ImageFolder(folder)
    bucket = config.text(config.S3_BUCKET)
    if not bucket:
        raise ValidationError(f"{config.IMAGE_STORE.name}=s3 needs the bucket in {config.S3_BUCKET.name}")
    return S3Images(bucket)
