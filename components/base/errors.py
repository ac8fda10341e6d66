"""The project's errors: one root, so a caller catches what this software says went wrong in one clause.

Every error raised on purpose derives from :class:`CataractCamError` and says in one sentence
what was wrong and what was expected; each also keeps the built-in kind it always had
(``ValueError`` for bad input, ``RuntimeError`` for a service that failed), so older callers
that catch those still do.
"""

from __future__ import annotations

__all__ = ["CataractCamError", "StorageError"]


class CataractCamError(Exception):
    """The root of every error cataract-cam raises on purpose: its message is one sentence for a person."""


class StorageError(CataractCamError, ValueError):
    """A place to keep or read data cannot be used: full, read-only, missing, unreachable or refused.

    The one storage error of the project: the record store's folder or database, its image store,
    and the local or ``s3://`` locations of batch and audit runs all raise it.
    """
