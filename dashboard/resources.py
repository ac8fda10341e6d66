"""What every session of the dashboard shares (``st.cache_resource``): the record store, the send ledger,
loaded classifiers, the Dask cluster and the bounded caches of maps, checks, panels and photographs.

Nothing here knows who is using the app; ``dashboard.session`` holds what belongs to one person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from components.base import config
from components.base.errors import CataractCamError
from components.explanation.cam import Explanation
from components.interop.ledger import SendLedger
from components.lens.attention import AttentionResult
from components.records import RecordStore, data_dir
from components.workflows.review import BoundedCache, MapKey, ReviewImage
from models import DEMO_MODEL_PATH, CheckpointError, Classifier, load_classifier, load_classifier_bytes

__all__ = [
    "ATTENTION_CACHE_BYTES",
    "CHECKPOINT_SUFFIXES",
    "IMAGE_CACHE_BYTES",
    "MAP_CACHE_BYTES",
    "PANEL_CACHE_BYTES",
    "TYPICALITY_CACHE_BYTES",
    "WEIGHTS_DIR",
    "Cluster",
    "attention_cache",
    "auth_configured",
    "checkpoints_on_server",
    "cluster",
    "default_model_path",
    "image_cache",
    "ledger",
    "load_checkpoint_bytes",
    "load_checkpoint_file",
    "map_cache",
    "panel_cache",
    "seed_demo_patients",
    "store",
    "typicality_cache",
]

WEIGHTS_DIR = DEMO_MODEL_PATH.parent
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# The shared caches are bounded by what they hold, not by how many entries: a map of a
# 1024-pixel model is 16 times one of a 224-pixel model. docs/MEMORY.md adds them up.
MAP_CACHE_BYTES = 32 * 2**20  # ~0.2 MB a map at 224 pixels: a few patients' worth of switches
ATTENTION_CACHE_BYTES = 8 * 2**20  # figures and a verdict, a few KB each
PANEL_CACHE_BYTES = 32 * 2**20  # encoded heatmap panels, ~100 KB each
IMAGE_CACHE_BYTES = 96 * 2**20  # display copies, ~3.5 MB each; full pixels and upload bytes are not kept here
TYPICALITY_CACHE_BYTES = 4 * 2**20  # a score, a flag and a few figures per photograph


# --- the record store and the send ledger ------------------------------------------------------


def _seed_demo_patients(store: RecordStore) -> None:
    # Demo patients belong with the demo model: a clinic that names its own model gets none.
    if config.text(config.MODEL):
        return
    from components.workflows.demo_patients import ensure_demo_patients

    ensure_demo_patients(store)


def seed_demo_patients() -> None:
    """Create the demo patients in a fresh record store now (``python -m dashboard`` does, before it serves)."""
    store = RecordStore(config.text(config.DB_URL) or None, data_dir=data_dir())
    try:
        _seed_demo_patients(store)
    finally:
        store.close()


@st.cache_resource(show_spinner=False, on_release=lambda store: store.close())
def _store(folder: str, db_url: str, require_sign_in: bool) -> RecordStore:
    # With sign-in configured the store itself refuses a typed name as a writer, author, signer or admin,
    # so the software's own demo patients are written through a store that names them "demo" first.
    seeding = RecordStore(db_url or None, data_dir=Path(folder))
    try:
        _seed_demo_patients(seeding)
    finally:
        seeding.close()
    return RecordStore(db_url or None, data_dir=Path(folder), require_sign_in=require_sign_in)


def auth_configured() -> bool:
    """Whether the secrets file has an ``[auth]`` section, so that everyone must sign in."""
    return config.secrets_section("auth") is not None


REAUTH_PROVIDER = "reauth"


def reauth_provider() -> str | None:
    """The sign-in provider that makes the person sign in again (to sign), or None for the default one.

    ``python -m dashboard`` adds it to the secrets it passes on (``dashboard.launch``): the clinic's own
    provider asked with ``prompt=login`` and ``max_age=0`` (OpenID Connect Core 3.1.2.1), so that it
    verifies the person again rather than reuse its session. A clinic may define ``[auth.reauth]``.
    """
    auth = config.secrets_section("auth")
    return REAUTH_PROVIDER if auth is not None and isinstance(auth.get(REAUTH_PROVIDER), Mapping) else None


@st.cache_resource(show_spinner=False)
def _pending_signatures() -> dict[tuple[str, str], tuple[str, str, str]]:
    return {}


def remember_signature(issuer: str, subject: str, pseudo_id: str, eye: str, *, sign_in: str) -> None:
    """Remember which eye a person went to sign in again for (from the sign-in ``sign_in``), to open it on return."""
    _pending_signatures()[(issuer, subject)] = (pseudo_id, eye, sign_in)


def take_pending_signature(issuer: str, subject: str, *, sign_in: str) -> tuple[str, str] | None:
    """The patient and eye a person signed in again for, once back under a new sign-in (then forgotten); else None.

    The old sign-in's own session runs once more before the browser leaves for the provider: it
    must not take what waits for the new one.
    """
    pending = _pending_signatures().get((issuer, subject))
    if pending is None or pending[2] == sign_in:
        return None
    del _pending_signatures()[(issuer, subject)]
    return pending[0], pending[1]


def store() -> RecordStore:
    """The record store of the configured data folder (``CATARACT_CAM_DATA``) and database (``CATARACT_CAM_DB_URL``)."""
    return _store(str(data_dir()), config.text(config.DB_URL) or "", auth_configured())


@st.cache_resource(show_spinner=False, on_release=lambda ledger: ledger.close())
def _ledger(folder: str, db_url: str) -> SendLedger:
    return SendLedger(db_url or None, folder=Path(folder))


def ledger() -> SendLedger:
    """The send ledger beside the configured record store."""
    return _ledger(str(data_dir()), config.text(config.DB_URL) or "")


# --- classifiers --------------------------------------------------------------------------------


def default_model_path() -> Path:
    """The checkpoint the dashboard starts with: ``CATARACT_CAM_MODEL`` or the shipped demo model."""
    return config.path(config.MODEL) or DEMO_MODEL_PATH


@st.cache_resource(show_spinner=False, max_entries=32)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _classifier(weights_sha256: str, _path: str | None, _data: bytes | None) -> Classifier:
    # Keyed by the weights' SHA-256 alone: the same weights under another name load once.
    if _data is not None:
        return load_classifier_bytes(_data)
    return load_classifier(_path)


def load_checkpoint_file(path: Path) -> Classifier:
    """Load a checkpoint file through the cache (raises ``CheckpointError``)."""
    try:
        info = path.stat()
    except OSError:
        raise CheckpointError("The checkpoint file does not exist or cannot be read.") from None
    if not path.is_file():
        raise CheckpointError("The model path is a folder; expected a checkpoint file (.pt or .pth).")
    sha = _file_sha256(str(path), info.st_mtime_ns, info.st_size)
    return _classifier(sha, str(path), None)


def load_checkpoint_bytes(data: bytes) -> Classifier:
    """Load an uploaded checkpoint through the cache (raises ``CheckpointError``)."""
    return _classifier(hashlib.sha256(data).hexdigest(), None, data)


def checkpoints_on_server() -> list[Path]:
    """Checkpoint files in ``models/weights/`` plus the configured default, sorted by name."""
    found = {p.resolve() for p in WEIGHTS_DIR.glob("*") if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file()}
    default = default_model_path()
    if default.is_file():
        found.add(default.resolve())
    return sorted(found, key=lambda p: p.name)


# --- the Dask cluster ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """The Dask cluster ``CATARACT_CAM_DASK`` names: a client, or why there is none."""

    address: str
    client: Any = None
    problem: str | None = None


@st.cache_resource(show_spinner="Connecting to the Dask cluster…", on_release=lambda c: c.client and c.client.close())
def _cluster(address: str) -> Cluster:
    from components.cluster.batch import open_client

    try:
        return Cluster(address, open_client(address))
    except (CataractCamError, ValueError) as exc:
        return Cluster(address, problem=str(exc))


def cluster() -> Cluster | None:
    """The cluster the Batch page runs on, shared by every session; None when ``CATARACT_CAM_DASK`` is unset."""
    address = config.text(config.DASK)
    return _cluster(address) if address else None


# --- the shared caches --------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def map_cache() -> BoundedCache[MapKey, Explanation]:
    """Computed maps per (image, model, method, target, layer), shared by every session, in memory only."""
    return BoundedCache(MAP_CACHE_BYTES)


@st.cache_resource(show_spinner=False)
def attention_cache() -> BoundedCache[tuple[MapKey, str | None], AttentionResult]:
    """Attention checks per (map, modality), shared by every session, in memory only."""
    return BoundedCache(ATTENTION_CACHE_BYTES)


@st.cache_resource(show_spinner=False)
def panel_cache() -> BoundedCache[tuple[MapKey, str, tuple[int, int]], tuple[bytes, float]]:
    """Encoded heatmap panels (and their width over the photograph's) per (map, colormap, size)."""
    return BoundedCache(PANEL_CACHE_BYTES)


@st.cache_resource(show_spinner=False)
def typicality_cache() -> BoundedCache[tuple[str, str], Any]:
    """Typicality (components.typicality.score.Typicality) per (image, model), shared by every session."""
    return BoundedCache(TYPICALITY_CACHE_BYTES)


@st.cache_resource(show_spinner=False)
def image_cache() -> BoundedCache[str, ReviewImage]:
    """Photographs' display copies (and how to get the full one) per SHA-256, shared by every session."""
    return BoundedCache(IMAGE_CACHE_BYTES)
