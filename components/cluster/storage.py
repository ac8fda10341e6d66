"""Where photographs and results live: local paths or ``s3://bucket/prefix`` objects, read and written alike.

A *location* is a string: a local path, or ``s3://BUCKET/KEY``. Object keys are used exactly as
written after the bucket (spaces, ``#``, ``?``, ``%`` and non-ASCII letters included: boto3
encodes them on the wire). The endpoint and credentials come from :class:`~components.base.s3.S3Settings`
(the record store's image store uses the same settings and clients).
Error messages never quote a key or a path: they may carry patient names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from components.base.errors import StorageError
from components.base.files import atomic_write_bytes
from components.base.s3 import S3Settings, s3_client
from components.imaging.loading import IMAGE_EXTENSIONS

__all__ = [
    "MAX_OBJECT_BYTES",
    "S3Settings",
    "StorageError",
    "collect_sources",
    "exists",
    "is_s3",
    "join",
    "list_prefix",
    "read_bytes",
    "s3_client",
    "source_name",
    "split_s3",
    "write_bytes",
]

SCHEME = "s3://"
# A photograph, a DICOM series frame or a checkpoint fits easily; anything larger is refused
# before it fills a worker's memory.
MAX_OBJECT_BYTES = 512 * 1024 * 1024


def _check_text(name: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a path or an s3:// URL as text, got {type(value).__name__}.")
    return value


def is_s3(location: str | os.PathLike[str]) -> bool:
    """True when ``location`` is an ``s3://`` URL (a local path never is).

    Raises:
        TypeError: ``location`` is not text or a path.
    """
    return _check_text("location", location).startswith(SCHEME)


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` as ``("bucket", "some/key")``; the key may be empty (the whole bucket).

    Raises:
        TypeError: ``url`` is not text.
        StorageError: it is not an ``s3://`` URL with a bucket name.
    """
    url = _check_text("url", url)
    if not url.startswith(SCHEME):
        raise StorageError("Expected an s3:// URL such as s3://bucket/prefix.")
    bucket, _, key = url[len(SCHEME):].partition("/")
    if not bucket:
        raise StorageError("The s3:// URL names no bucket; expected s3://bucket/prefix.")
    return bucket, key


def join(base: str | os.PathLike[str], name: str) -> str:
    """The location of ``name`` inside a folder or an S3 prefix.

    Raises:
        TypeError: ``base`` or ``name`` is not text.
    """
    base = _check_text("base", base)
    name = _check_text("name", name)
    if is_s3(base):
        return f"{base}{name}" if base.endswith("/") or base == SCHEME else f"{base}/{name}"
    return str(Path(base) / name)


def source_name(location: str | os.PathLike[str]) -> str:
    """The last component of a path or an object key (what panel names are made from).

    Raises:
        TypeError: ``location`` is not text or a path.
    """
    location = _check_text("location", location)
    if is_s3(location):
        return PurePosixPath(split_s3(location)[1]).name
    return Path(location).name


def _storage_error(exc: Exception, doing: str) -> StorageError:
    """One sentence for a boto3 failure, naming the error code but never the key."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "404", "NotFound"):
        return StorageError(f"Could not {doing}: the object does not exist.")
    if code == "NoSuchBucket":
        return StorageError(f"Could not {doing}: the bucket does not exist.")
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return StorageError(f"Could not {doing}: access denied (check the AWS credentials).")
    if code:
        return StorageError(f"Could not {doing}: object storage answered {code}.")
    return StorageError(f"Could not {doing}: object storage could not be reached ({type(exc).__name__}).")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def list_prefix(url: str, settings: S3Settings | None = None) -> Iterator[str]:
    """Every object under an S3 prefix, as ``s3://`` URLs in key order; a prefix is a folder (``a`` lists ``a/...``).

    Keys ending in ``/`` (folder markers some tools write) are skipped. An empty prefix lists the
    whole bucket.

    Raises:
        StorageError: the URL is malformed, or the bucket cannot be listed.
    """
    bucket, key = split_s3(url)
    prefix = key if not key or key.endswith("/") else key + "/"
    client = s3_client(settings)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if not entry["Key"].endswith("/"):
                    yield f"{SCHEME}{bucket}/{entry['Key']}"
    except _boto_errors() as exc:
        raise _storage_error(exc, "list the S3 prefix") from None


def _object_exists(bucket: str, key: str, settings: S3Settings | None) -> bool:
    if not key or key.endswith("/"):
        return False
    try:
        s3_client(settings).head_object(Bucket=bucket, Key=key)
    except _boto_errors() as exc:
        error = _storage_error(exc, "read the object")
        if "does not exist" in str(error):
            return False
        raise error from None
    return True


def collect_sources(inputs: Iterable[str | os.PathLike[str]], settings: S3Settings | None = None) -> list[str]:
    """Inputs as locations: files and objects named explicitly, image files under folders and prefixes.

    Like :func:`components.workflows.batch.collect_inputs`: folders are searched recursively in sorted
    order; an S3 URL naming one object is that object, otherwise it is a prefix whose image
    objects are listed. A local path that does not exist is kept, to be reported as a failed row.

    Raises:
        TypeError: an input is not text or a path.
        StorageError: an S3 prefix cannot be listed.
    """
    from components.workflows.batch import collect_inputs

    found: list[str] = []
    for item in inputs:
        text = _check_text("input", item)
        if not is_s3(text):
            found.extend(str(p) for p in collect_inputs([text]))
            continue
        bucket, key = split_s3(text)
        if _object_exists(bucket, key, settings):
            found.append(text)
            continue
        found.extend(u for u in list_prefix(text, settings)
                     if PurePosixPath(split_s3(u)[1]).suffix.lower() in IMAGE_EXTENSIONS)
    return found


def read_bytes(location: str | os.PathLike[str], settings: S3Settings | None = None) -> bytes:
    """The whole content of a local file or an S3 object.

    Raises:
        TypeError: ``location`` is not text or a path.
        StorageError: it cannot be read, or it is larger than :data:`MAX_OBJECT_BYTES`.
    """
    location = _check_text("location", location)
    if not is_s3(location):
        try:
            return Path(location).read_bytes()
        except OSError:
            raise StorageError("Could not read the file: it does not exist or cannot be read.") from None
    bucket, key = split_s3(location)
    if not key:
        raise StorageError("The s3:// URL names a bucket, not an object.")
    try:
        response = s3_client(settings).get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength", 0)) > MAX_OBJECT_BYTES:
            response["Body"].close()
            raise StorageError(f"The object is larger than {MAX_OBJECT_BYTES // (1024 * 1024)} MB; refused.")
        return bytes(response["Body"].read())
    except _boto_errors() as exc:
        raise _storage_error(exc, "read the object") from None


def write_bytes(location: str | os.PathLike[str], data: bytes, settings: S3Settings | None = None) -> None:
    """Write ``data`` whole or not at all: a local file through a temporary name, an object in one PUT.

    Raises:
        TypeError: ``location`` is not text or a path, or ``data`` is not bytes.
        StorageError: it cannot be written.
    """
    location = _check_text("location", location)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}.")
    if not is_s3(location):
        try:
            atomic_write_bytes(location, bytes(data))
        except OSError:
            raise StorageError("Could not write the file to the output folder.") from None
        return
    bucket, key = split_s3(location)
    if not key or key.endswith("/"):
        raise StorageError("The s3:// URL names a bucket or a prefix, not an object to write.")
    try:
        s3_client(settings).put_object(Bucket=bucket, Key=key, Body=bytes(data))
    except _boto_errors() as exc:
        raise _storage_error(exc, "write the object") from None


def exists(location: str | os.PathLike[str], settings: S3Settings | None = None) -> bool:
    """True when a local file or an S3 object is there.

    Raises:
        TypeError: ``location`` is not text or a path.
        StorageError: object storage cannot be asked.
    """
    location = _check_text("location", location)
    if not is_s3(location):
        return Path(location).is_file()
    bucket, key = split_s3(location)
    return _object_exists(bucket, key, settings)
