"""Is every configured part of a clinic's set-up ready? One line per part, for an operator.

``cataract-cam check`` prints :func:`check_parts` and exits non-zero when a part fails; the
dashboard's admin-only Status page shows the same lines. Each check reads the settings as the
program would (``components.base.config``), touches the part the least a real use would (reads
the schema version, writes and deletes a probe object, one QIDO search, one discovery document)
and says what it found in one sentence, with no secret, password or patient data in it. A part
that is not configured is not a failure: it is reported as such, since a clinic may run without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import requests
from sqlalchemy.engine import make_url

from components.base import config

__all__ = ["PARTS", "PartCheck", "check_parts"]

PARTS: Final = ("database", "model", "image store", "anchor", "PACS", "sign-in provider")
"""The parts checked, in the order they are reported."""


@dataclass(frozen=True)
class PartCheck:
    """What one part's check found: ``ok`` False only for a configured part that is not ready."""

    part: str
    ok: bool
    detail: str  # one sentence, no secret
    configured: bool = True

    @property
    def status(self) -> str:
        return "ok" if self.ok and self.configured else ("-" if self.ok else "FAIL")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def check_parts(*, timeout: float = 5.0, model: str | os.PathLike[str] | None = None) -> list[PartCheck]:
    """Check every part in :data:`PARTS` order; never raises for a part that fails.

    ``model``: the checkpoint to check instead of ``CATARACT_CAM_MODEL`` (or the demo model).
    """
    checks: dict[str, Callable[[float], PartCheck]] = {
        "database": _database, "model": lambda t: _model(t, model), "image store": _image_store, "anchor": _anchor,
        "PACS": _pacs, "sign-in provider": _sign_in,
    }
    found = []
    for part in PARTS:
        try:
            found.append(checks[part](timeout))
        except Exception as error:  # a check's own fault still says which part, never a traceback
            found.append(PartCheck(part, False, f"the check itself failed ({type(error).__name__})."))
    return found


def _database(timeout: float) -> PartCheck:
    from components.records.migrations import schema_version
    from components.records.schema import SCHEMA_VERSION
    from components.records.settings import configured_data_dir, database_url, make_engine

    url = make_url(database_url(None, configured_data_dir()))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        if url.database and not Path(url.database).is_file():
            return PartCheck("database", True, f"{shown} does not exist yet; the dashboard creates it when it "
                                               "first opens.")
    elif url.get_backend_name() == "postgresql":
        url = url.update_query_dict({"connect_timeout": str(max(1, round(timeout)))})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            found = schema_version(connection)
    except Exception:  # the driver's own kinds: refused, unknown host, bad password, not a database
        return PartCheck("database", False, f"{shown} could not be opened (not reachable, or it refused the "
                                            "credentials).")
    finally:
        engine.dispose()
    if found is None:
        return PartCheck("database", False, f"{shown} is reachable but holds no records schema; create it "
                                            "(cataract-cam records verify, or open the dashboard once).")
    if found < SCHEMA_VERSION:
        return PartCheck("database", False, f"{shown} is at schema version {found}, older than this program's "
                                            f"{SCHEMA_VERSION}; migrate it.")
    if found > SCHEMA_VERSION:
        return PartCheck("database", False, f"{shown} is at schema version {found}, newer than this program's "
                                            f"{SCHEMA_VERSION}; upgrade the program.")
    return PartCheck("database", True, f"{shown} is reachable, at schema version {found} (current).")


def _model(timeout: float, given: str | os.PathLike[str] | None = None) -> PartCheck:
    from models import DEMO_MODEL_PATH, CheckpointError, load_classifier

    path = Path(given).expanduser() if given is not None else config.path(config.MODEL) or DEMO_MODEL_PATH
    if not path.is_file():
        return PartCheck("model", False, f"{path} is not a file.")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    try:
        classifier = load_classifier(path)
    except CheckpointError as error:
        return PartCheck("model", False, f"{path} (SHA-256 {sha[:16]}...) cannot be used: {error}")
    if not classifier.card.get("intended_use"):
        card = path.with_suffix(".json").name
        return PartCheck("model", False, f"{path} (SHA-256 {sha[:16]}...) has no model card with its intended use "
                                         f"({card} beside it, or in the checkpoint); the report needs it.")
    what = "the demo model" if classifier.is_demo else f"model {classifier.name!r}"
    return PartCheck("model", True, f"{what}: {path.name}, SHA-256 {sha[:16]}..., with its model card.")


def _image_store(timeout: float) -> PartCheck:
    from components.records.objects import image_store
    from components.records.settings import IMAGES_FOLDER, configured_data_dir

    kind = config.choice(config.IMAGE_STORE)
    if kind == "s3":
        bucket = config.text(config.S3_BUCKET)
        if not bucket:
            return PartCheck("image store", False, f"{config.IMAGE_STORE.name}=s3 needs the bucket in "
                                                   f"{config.S3_BUCKET.name}.")
        store = image_store(configured_data_dir())
        probe = b"cataract-cam readiness probe " + secrets.token_hex(8).encode()
        try:
            key = store.put(probe)
            store.delete(key)
        except Exception:  # botocore's kinds: no endpoint, no bucket, no credentials, denied
            return PartCheck("image store", False, f"the S3 bucket {bucket} could not be written (not reachable, "
                                                   "missing, or the credentials were refused).")
        return PartCheck("image store", True, f"the S3 bucket {bucket} is writable.")
    folder = configured_data_dir() / IMAGES_FOLDER
    existing = next((level for level in (folder, *folder.parents) if level.exists()), None)
    if existing is None or not existing.is_dir():
        return PartCheck("image store", False, f"{folder} cannot be made: {existing} is not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        return PartCheck("image store", False, f"{existing} is not writable by this user.")
    if existing != folder:
        return PartCheck("image store", True, f"{folder} does not exist yet; {existing} is writable, so it can "
                                              "be made.")
    probe_path = folder / f".readiness-{secrets.token_hex(8)}"
    try:
        probe_path.write_bytes(b"probe")
        probe_path.unlink()
    except OSError:
        return PartCheck("image store", False, f"{folder} could not be written (read-only or full).")
    return PartCheck("image store", True, f"{folder} is writable.")


def _anchor(timeout: float) -> PartCheck:
    target = config.text(config.ANCHOR)
    if not target:
        return PartCheck("anchor", True, "not configured: the audit trail's head is kept in the database only.",
                         configured=False)
    if target.startswith("s3://"):
        from components.base.s3 import S3Settings, s3_client

        bucket = target[len("s3://"):].split("/", 1)[0]
        try:
            lock = s3_client(S3Settings.configured()).get_object_lock_configuration(Bucket=bucket)
        except Exception:  # botocore's kinds: no bucket, no lock configuration, no network, denied
            return PartCheck("anchor", False, f"the S3 bucket {bucket} of the anchor could not be reached, or it "
                                              "has no object lock.")
        if lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            return PartCheck("anchor", False, f"the S3 bucket {bucket} of the anchor has no object lock.")
        return PartCheck("anchor", True, f"the S3 bucket {bucket} of the anchor is reachable, with object lock.")
    path = Path(target).expanduser()
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return PartCheck("anchor", False, f"{path} is not writable by this user.")
    if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        return PartCheck("anchor", False, f"{path} cannot be made: its folder is missing or not writable.")
    return PartCheck("anchor", True, f"{path} is writable.")


def _pacs(timeout: float) -> PartCheck:
    from components.interop.dicomweb import DicomWebConfig, PacsClient, PacsError

    try:
        pacs = DicomWebConfig.configured(timeout=timeout)
    except ValueError as error:
        return PartCheck("PACS", False, str(error))
    if pacs is None:
        return PartCheck("PACS", True, f"not configured ({config.DICOMWEB_URL.name} is not set).", configured=False)
    try:
        PacsClient(pacs).search_studies(modalities=("OP",), limit=1)
    except PacsError as error:
        return PartCheck("PACS", False, str(error))
    return PartCheck("PACS", True, f"the DICOMweb service at {pacs.where} answered a search.")


def _sign_in(timeout: float) -> PartCheck:
    auth = config.secrets_section("auth") or {}
    url = config.text(config.OIDC_METADATA_URL) or str(auth.get("server_metadata_url") or "").strip()
    if not url:
        return PartCheck("sign-in provider", True, "not configured: the dashboard serves this computer only, "
                                                   "without sign-in.", configured=False)
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, json.JSONDecodeError, ValueError):
        return PartCheck("sign-in provider", False, f"its discovery document at {_host(url)} could not be read.")
    missing = [key for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
               if not isinstance(document, dict) or not document.get(key)]
    if missing:
        return PartCheck("sign-in provider", False, f"its discovery document at {_host(url)} lacks "
                                                    f"{', '.join(missing)}.")
    return PartCheck("sign-in provider", True, f"the discovery document of {document['issuer']} was read.")


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
