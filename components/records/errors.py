"""What the record store raises: one family of errors, each naming what was wrong."""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "NotFound",
    "PermissionDenied",
    "RecordsError",
    "ReviewLocked",
    "SchemaVersionError",
    "ValidationError",
]


class RecordsError(ValueError):
    """A records operation could not be done as asked."""


class ValidationError(RecordsError):
    """A value given to the record store is not one it accepts."""


class NotFound(RecordsError):
    """The patient, exam, review or image asked for is not stored."""


class AlreadyExists(RecordsError):
    """A record with the same unique key is already stored."""


class ReviewLocked(RecordsError):
    """A signed review was about to be changed; signed reviews are kept as they were signed."""


class SchemaVersionError(RecordsError):
    """The database was written with a schema this program cannot read."""


class PermissionDenied(RecordsError):
    """The identity acting is not signed in, or its role does not allow what it asked."""
