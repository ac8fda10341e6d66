"""Object storage: one way to reach S3-compatible storage, for the record store's images and for runs.

:class:`S3Settings` says which endpoint (``--s3-endpoint``, ``CATARACT_CAM_S3_ENDPOINT`` or boto3's
own sources: the ``AWS_*`` environment variables, ``~/.aws``); :func:`s3_client` makes one client
per endpoint and process, shared by its threads. boto3 is imported only when a client is made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from components.base import config
from components.base.errors import StorageError

__all__ = ["S3Settings", "s3_client"]


@dataclass(frozen=True)
class S3Settings:
    """How to reach object storage: an explicit endpoint (``--s3-endpoint``) or None for boto3's own sources."""

    endpoint_url: str | None = None

    @classmethod
    def configured(cls, endpoint_url: str | None = None) -> S3Settings:
        """``endpoint_url`` if given (``--s3-endpoint``), else ``CATARACT_CAM_S3_ENDPOINT``, else boto3's own.

        Raises:
            StorageError: the endpoint is not an http:// or https:// URL.
        """
        return cls(endpoint_url or config.text(config.S3_ENDPOINT))

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            if not isinstance(self.endpoint_url, str):
                raise TypeError(f"endpoint_url must be text or None, got {type(self.endpoint_url).__name__}.")
            if not self.endpoint_url.startswith(("http://", "https://")):
                raise StorageError("The S3 endpoint must start with http:// or https://.")


_clients: dict[tuple[str | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def s3_client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client for ``settings``, made once per process and shared by its threads.

    Raises:
        TypeError: ``settings`` is not :class:`S3Settings` or None.
    """
    if settings is not None and not isinstance(settings, S3Settings):
        raise TypeError(f"settings must be S3Settings or None, got {type(settings).__name__}.")
    endpoint = settings.endpoint_url if settings is not None else None
    # boto3 reads AWS_ENDPOINT_URL(_S3) when the client is made: a changed variable needs a new one.
    key = (endpoint, config.text(config.AWS_S3_ENDPOINT) or config.text(config.AWS_ENDPOINT))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            # boto3 clients are thread-safe, sessions are not: one private session per client.
            session = boto3.session.Session()
            options = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
            client = session.client("s3", endpoint_url=endpoint, config=options)
            _clients[key] = client
    return client
