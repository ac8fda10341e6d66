"""What the record store raises: one family of errors, each naming what was wrong.

A store that cannot write (full, read-only, not permitted) raises the project's one
:class:`~components.base.errors.StorageError`, re-exported here; it is not a ``RecordsError``, so
a caller that shows any of these sentences catches ``CataractCamError``.
"""

from __future__ import annotations

import errno

from components.base.errors import CataractCamError, StorageError

__all__ = [
    "AlreadyExists",
    "NotFound",
    "PermissionDenied",
    "RecordsError",
    "ReviewLocked",
    "SchemaVersionError",
    "SignInTooOld",
    "StorageError",
    "ValidationError",
    "storage_error",
]


class RecordsError(CataractCamError, ValueError):
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


class SignInTooOld(PermissionDenied):
    """A signature needs a sign-in more recent than the signer's; signing in again at the provider allows it."""


DISK_FULL = "The data folder's disk is full, so nothing was saved; free some space and try again."
READ_ONLY = "The data folder or the records database is read-only, so nothing was saved."
NOT_SAVED = "The records could not be written to the data folder, so nothing was saved."
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def storage_error(error: BaseException) -> StorageError:
    """One sentence for a failed write, from an OSError or a database error; never quotes a path or a value.

    Raises:
        TypeError: ``error`` is not an exception.
    """
    if not isinstance(error, BaseException):
        raise TypeError(f"storage_error expects an exception, got {type(error).__name__}.")
    if isinstance(error, OSError):
        if error.errno in _FULL_ERRNOS:
            return StorageError(DISK_FULL)
        if error.errno in _READ_ONLY_ERRNOS:
            return StorageError(READ_ONLY)
        return StorageError(NOT_SAVED)
    # SQLite reports these as text only (SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN).
    text = str(getattr(error, "orig", error)).lower()
    if "disk is full" in text:
        return StorageError(DISK_FULL)
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return StorageError(READ_ONLY)
    return StorageError(NOT_SAVED)
