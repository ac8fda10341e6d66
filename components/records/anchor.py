"""The chain's head written outside the database: a file appended to, or S3 objects under object lock.

Whoever can rewrite the whole database can rebuild its hash chain so that ``verify`` passes. An
anchor keeps, out of the database's reach, the sequence number and hash of the chain's head as
they were after each signature (and whenever asked): ``verify`` against it fails when an anchored
entry is missing or differs, so a rewritten or cut-back database is detected.

- ``FileAnchor``: one JSON line per point, appended (``O_APPEND``) and flushed to disk. Put it
  where the database's users cannot rewrite it: another machine's share, a file made append-only
  (``chattr +a``), a log shipper's input.
- ``S3Anchor``: one object per point under ``s3://bucket/prefix/``, written with object lock in
  compliance mode for ``CATARACT_CAM_ANCHOR_RETAIN_DAYS`` (the bucket must have object lock on):
  nobody, the account's owner included, can delete or overwrite it before then.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from components.base import config
from components.base.errors import StorageError
from components.base.s3 import S3Settings, s3_client
from components.records.errors import RecordsError
from components.records.schema import AuditRow

__all__ = ["Anchor", "AnchorError", "AnchorPoint", "FileAnchor", "S3Anchor", "anchor_at", "check_anchor",
           "configured_anchor", "now_point"]

_HASH: Final = re.compile(r"[0-9a-f]{64}")
DEFAULT_RETAIN_DAYS: Final = 3650


class AnchorError(RecordsError):
    """An anchor cannot be read, or holds something that is no anchor point."""


@dataclass(frozen=True)
class AnchorPoint:
    """The chain's head at one moment: its last entry's sequence number and hash, and when it was written."""

    seq: int
    hash: str
    time: datetime

    def as_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "time": self.time.isoformat()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> AnchorPoint:
        try:
            item = json.loads(text)
            seq, digest, time = item["seq"], item["hash"], datetime.fromisoformat(item["time"])
        except (ValueError, KeyError, TypeError):
            raise AnchorError(f"{where} of the anchor is not an anchor point.") from None
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not isinstance(digest, str) \
                or not _HASH.fullmatch(digest):
            raise AnchorError(f"{where} of the anchor is not an anchor point.")
        return cls(seq, digest, time)


class Anchor(Protocol):
    """Where anchor points are written and read back."""

    @property
    def location(self) -> str: ...

    def write(self, point: AnchorPoint) -> None: ...

    def read(self) -> list[AnchorPoint]: ...


@dataclass(frozen=True)
class FileAnchor:
    """Anchor points as JSON lines appended to a file."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def write(self, point: AnchorPoint) -> None:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, (point.as_json() + "\n").encode())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise StorageError(f"The anchor file cannot be written: {error.strerror or error}.") from None

    def read(self) -> list[AnchorPoint]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise AnchorError("The anchor file does not exist: nothing was anchored there yet.") from None
        except (OSError, UnicodeDecodeError):
            raise AnchorError("The anchor file cannot be read.") from None
        return [AnchorPoint.from_json(line, f"line {n}") for n, line in enumerate(lines, start=1) if line.strip()]


@dataclass(frozen=True)
class S3Anchor:
    """Anchor points as objects under ``s3://bucket/prefix/``, each locked in compliance mode."""

    bucket: str
    prefix: str
    retain_days: int = DEFAULT_RETAIN_DAYS

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _client(self) -> Any:
        return s3_client(S3Settings.configured())

    def write(self, point: AnchorPoint) -> None:
        key = f"{self.prefix}/{point.seq:012d}-{point.hash[:16]}.json".lstrip("/")
        try:
            self._client().put_object(
                Bucket=self.bucket, Key=key, Body=point.as_json().encode(), ContentType="application/json",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=point.time + timedelta(days=self.retain_days))
        except Exception as error:  # botocore's errors: no bucket, no object lock, no network
            raise StorageError(f"The anchor cannot be written to {self.location}: {type(error).__name__}.") from None

    def read(self) -> list[AnchorPoint]:
        client = self._client()
        points = []
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=f"{self.prefix}/".lstrip("/"))
            for page in pages:
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                    points.append(AnchorPoint.from_json(body.decode("utf-8", "replace"), f"object {item['Key']}"))
        except AnchorError:
            raise
        except Exception as error:
            raise AnchorError(f"The anchor at {self.location} cannot be read: {type(error).__name__}.") from None
        if not points:
            raise AnchorError(f"The anchor at {self.location} holds nothing: nothing was anchored there yet.")
        return points


def anchor_at(location: str) -> FileAnchor | S3Anchor:
    """The anchor at ``location``: ``s3://bucket/prefix`` or a file path.

    Raises:
        AnchorError: an s3:// location without a bucket.
        ConfigError: ``CATARACT_CAM_ANCHOR_RETAIN_DAYS`` is not a whole number of days from 1 to 36500.
    """
    if not isinstance(location, str) or not location.strip():
        raise AnchorError("An anchor is a file path or s3://bucket/prefix.")
    location = location.strip()
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://"):].partition("/")
        if not bucket:
            raise AnchorError("An s3:// anchor names a bucket: s3://bucket/prefix.")
        days = config.integer(config.ANCHOR_RETAIN_DAYS, 1, 36500, unit="days") or DEFAULT_RETAIN_DAYS
        return S3Anchor(bucket, prefix.strip("/") or "chain-anchor", days)
    return FileAnchor(Path(location).expanduser())


def configured_anchor() -> FileAnchor | S3Anchor | None:
    """The anchor of ``CATARACT_CAM_ANCHOR``, or None when it is not set."""
    location = config.text(config.ANCHOR)
    return anchor_at(location) if location else None


def now_point(seq: int, digest: str) -> AnchorPoint:
    """The point for a head of ``seq`` and ``digest``, stamped now."""
    return AnchorPoint(seq, digest, datetime.now(UTC))


def check_anchor(session: Session, points: list[AnchorPoint]) -> str | None:
    """The first anchored point the chain no longer holds, as one sentence, or None when it holds them all."""
    for point in sorted(points, key=lambda p: p.seq):
        if point.seq == 0:
            continue
        found = session.scalar(select(AuditRow.hash).where(AuditRow.seq == point.seq))
        when = point.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if found is None:
            return (f"the chain has no entry {point.seq}, which the anchor written at {when} holds: "
                    "the database was cut back or rewritten")
        if found != point.hash:
            return (f"audit entry {point.seq} differs from the anchor written at {when}: "
                    "the database was rewritten")
    return None
