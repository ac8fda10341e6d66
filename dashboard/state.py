"""Streamlit glue shared by the pages: the cached classifier, record store and map caches, and per-session settings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from components.explanation.cam import Explanation
from components.records import DB_URL_ENV, Identity, PatientRecord, RecordStore, data_dir
from components.screening.vocabulary import DEMO_WARNING
from components.workflows.review_session import (
    PREDICTED,
    BoundedCache,
    HeldUpload,
    MapKey,
    ReviewImage,
    image_from_upload,
    reattached,
)
from dashboard import access
from dashboard.present import plain
from dashboard.runs import Look
from models import DEMO_MODEL_PATH, CheckpointError, Classifier, load_classifier, load_classifier_bytes

MODEL_ENV = "CATARACT_CAM_MODEL"
"""Environment variable naming the checkpoint the dashboard starts with (default: the demo model)."""

WEIGHTS_DIR = DEMO_MODEL_PATH.parent
CHECKPOINT_SUFFIXES = (".pt", ".pth")
# The shared caches are bounded by what they hold, not by how many entries: a map of a
# 1024-pixel model is 16 times one of a 224-pixel model. docs/MEMORY.md adds them up.
MAP_CACHE_BYTES = 32 * 2**20  # ~0.2 MB a map at 224 pixels: a few patients' worth of switches
ATTENTION_CACHE_BYTES = 8 * 2**20  # figures and a verdict, a few KB each
PANEL_CACHE_BYTES = 32 * 2**20  # encoded heatmap panels, ~100 KB each
IMAGE_CACHE_BYTES = 96 * 2**20  # display copies, ~3.5 MB each; full pixels and upload bytes are not kept here
TYPICALITY_CACHE_BYTES = 4 * 2**20  # a score, a flag and a few figures per photograph

# Defaults of the settings widgets (drawn with persist_state="session", so a visit to another
# page keeps them); set here rather than through each widget's value, so that another page may
# set one (the worklist opens a patient) without a conflict between the two.
SETTINGS: dict[str, Any] = {
    "alpha": 0.5,
    "colormap": "jet",
    "method": "gradcam",
    "target": PREDICTED,
    "reviewer": "",
    "current_patient": "",
}

# Not pages/: beside the entry script, Streamlit would take that folder for its older multipage
# mechanism; st.navigation names the page files itself.
PAGE_REVIEW = "views/review.py"
PAGE_WORKLIST = "views/worklist.py"
PAGE_BATCH = "views/batch.py"
PAGE_AUDIT = "views/audit.py"
PAGE_COMPARE = "views/compare.py"
PAGE_MODEL = "views/model.py"


def keep_settings() -> None:
    """Give every setting its default once (call at the top of every run)."""
    for key, default in SETTINGS.items():
        st.session_state.setdefault(key, default)


def _secrets_section(name: str) -> Any:
    try:
        return st.secrets.get(name)
    except FileNotFoundError:  # no secrets file at all: no sign-in configured
        return None


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` has an ``[auth]`` section, so that everyone must sign in."""
    return bool(_secrets_section("auth"))


def bind_refusal() -> str | None:
    """Why this server must not serve (bound beyond this computer without sign-in), or None."""
    return access.bind_refusal(st.get_option("server.address"), auth_configured=auth_configured(),
                               environ=os.environ)


def signed_in() -> bool:
    """Whether an identity provider has signed this browser in (``st.user``)."""
    return bool(st.user.get("is_logged_in", False))


def person() -> access.Person:
    """This session's person: the signed-in identity with its roles, or the typed name without sign-in.

    Raises:
        ValueError: sign-in is configured and the identity provider's token lacks an issuer or subject.
    """
    if not auth_configured():
        return access.local_person(str(st.session_state.get("reviewer", "")))
    if not signed_in():
        return access.Person(name="", issuer=None, subject=None, roles=frozenset())
    settings = access.AccessSettings.from_mapping(_secrets_section("access"))
    return access.person_from_claims(st.user.to_dict(), settings)


def actor() -> Identity:
    """Who the audit trail names for this session's actions, and who writes and signs its reviews."""
    return access.identity(person())


def actor_name() -> str:
    """The reviewer as a report prints it: ``name <issuer|subject>``, or ``name (unauthenticated)``."""
    return access.actor_text(person())


def open_patient(store: RecordStore, pseudo_id: str) -> PatientRecord:
    """The patient; the first opening in this session is logged as a view (a rerun is not a new view)."""
    opened: set[str] = st.session_state.setdefault("_opened_patients", set())
    if pseudo_id in opened:
        return store.get_patient(pseudo_id)
    patient = store.open_patient(pseudo_id, viewer=actor())
    opened.add(pseudo_id)
    return patient


def flash(message: str, kind: str = "success") -> None:
    """Queue a message to show at the top of the next run (a rerun wipes what this run drew)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    """Show and forget the queued messages."""
    for kind, message in st.session_state.pop("_flash", []):
        {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}[kind](message)


# --- the record store -------------------------------------------------------------------------


def _seed_demo_patients(store: RecordStore) -> None:
    # Demo patients belong with the demo model: a clinic that names its own model gets none.
    if os.environ.get(MODEL_ENV):
        return
    try:
        from models.demo_patients import ensure_demo_patients
    except ModuleNotFoundError:
        return
    ensure_demo_patients(store)


@st.cache_resource(show_spinner=False, on_release=lambda store: store.close())
def _store(folder: str, db_url: str, require_sign_in: bool) -> RecordStore:
    # With sign-in configured the store itself refuses a typed name as author, signer or admin.
    store = RecordStore(db_url or None, data_dir=Path(folder), require_sign_in=require_sign_in)
    _seed_demo_patients(store)
    return store


def store() -> RecordStore:
    """The record store of the configured data folder (``CATARACT_CAM_DATA``) and database."""
    return _store(str(data_dir()), os.environ.get(DB_URL_ENV, ""), auth_configured())


# --- the classifier ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """Which checkpoint this session uses: a file on the server or an uploaded one."""

    kind: str  # "file" or "upload"
    path: str | None = None
    sha256: str | None = None
    label: str = ""


def default_model_path() -> Path:
    """The checkpoint the dashboard starts with: ``CATARACT_CAM_MODEL`` or the shipped demo model."""
    configured = os.environ.get(MODEL_ENV, "")
    return Path(configured).expanduser() if configured else DEMO_MODEL_PATH


@dataclass(frozen=True)
class Cluster:
    """The Dask cluster ``CATARACT_CAM_DASK`` names: a client, or why there is none."""

    address: str
    client: Any = None
    problem: str | None = None


@st.cache_resource(show_spinner="Connecting to the Dask cluster…", on_release=lambda c: c.client and c.client.close())
def _cluster(address: str) -> Cluster:
    from components.cluster.batch import ClusterError, open_client

    try:
        return Cluster(address, open_client(address))
    except (ClusterError, ValueError) as exc:
        return Cluster(address, problem=str(exc))


def cluster() -> Cluster | None:
    """The cluster the Batch page runs on, shared by every session; None when ``CATARACT_CAM_DASK`` is unset."""
    from components.cluster.batch import DASK_ENV

    address = os.environ.get(DASK_ENV, "").strip()
    return _cluster(address) if address else None


def model_source() -> str | bytes | None:
    """What a cluster's workers load: this session's checkpoint file, or the uploaded checkpoint's bytes."""
    choice = model_choice()
    if choice.kind == "upload":
        data = st.session_state.get("_model_upload")
        return data if isinstance(data, bytes) else None
    return choice.path


def model_choice() -> ModelChoice:
    """This session's checkpoint choice (the default until the user picks another)."""
    choice = st.session_state.get("model_choice")
    if isinstance(choice, ModelChoice):
        return choice
    path = default_model_path()
    return ModelChoice("file", path=str(path), label=path.name)


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


def _missing_model_message(choice: ModelChoice) -> str:
    if choice.path is not None and Path(choice.path) == DEMO_MODEL_PATH:
        return ("The shipped demo model (models/weights/cataract_b0_demo.pt) is not installed yet. "
                "Choose or upload a checkpoint on the Model page.")
    return ("The model file configured for this dashboard cannot be found. "
            "Choose or upload a checkpoint on the Model page.")


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


def look() -> Look:
    """The Review page's method, colormap and transparency, which the other pages draw with too."""
    return Look(method=str(st.session_state.get("method", "gradcam")),
                colormap=str(st.session_state.get("colormap", "jet")),
                alpha=float(st.session_state.get("alpha", 0.5)))


def classifier() -> tuple[Classifier | None, str | None]:
    """This session's classifier, or None and one sentence saying why there is none."""
    choice = model_choice()
    try:
        if choice.kind == "upload":
            data = st.session_state.get("_model_upload")
            if not isinstance(data, bytes):
                return None, "The uploaded model is no longer available; upload it again on the Model page."
            return load_checkpoint_bytes(data), None
        assert choice.path is not None
        path = Path(choice.path)
        if not path.exists():
            return None, _missing_model_message(choice)
        return load_checkpoint_file(path), None
    except CheckpointError as error:
        # The message may quote a checkpoint's own text: escaped, as st.error renders Markdown.
        return None, f"The selected model cannot be used: {plain(str(error))}"


def model_notice(clf: Classifier | None, problem: str | None) -> None:
    """The banner every page shows: a missing model, or the demo model's warning."""
    if clf is None:
        st.error(problem or "No model is loaded.")
        st.page_link(PAGE_MODEL, label="Go to the Model page", icon=":material/model_training:")
    elif clf.is_demo:
        st.warning(f"{DEMO_WARNING} Its results only show how the software works.", icon=":material/science:")


def open_page(title: str) -> Classifier | None:
    """Every page's head: its title, the queued messages, the model banner; returns this session's model."""
    st.title(title)
    show_flashes()
    clf, problem = classifier()
    model_notice(clf, problem)
    return clf


def checkpoints_on_server() -> list[Path]:
    """Checkpoint files in ``models/weights/`` plus the configured default, sorted by name."""
    found = {p.resolve() for p in WEIGHTS_DIR.glob("*") if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file()}
    default = default_model_path()
    if default.is_file():
        found.add(default.resolve())
    return sorted(found, key=lambda p: p.name)


# --- the shared caches ------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def map_cache() -> BoundedCache[MapKey, Explanation]:
    """Computed maps per (image, model, method, target, layer), shared by every session, in memory only."""
    return BoundedCache(MAP_CACHE_BYTES)


@st.cache_resource(show_spinner=False)
def attention_cache() -> BoundedCache[tuple[MapKey, str | None], dict[str, Any]]:
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


def cached_image(sha256: str, load: Callable[[], ReviewImage]) -> ReviewImage:
    """The photograph's display copy from the shared cache, or loaded and cached (``load`` may raise)."""
    cache = image_cache()
    image = cache.get(sha256)
    if image is None:
        image = load()
        cache.put(sha256, image)
    return image


def upload_image(sha256: str, upload: HeldUpload, filename: str) -> ReviewImage:
    """An upload's display copy from the shared cache (or decoded now), reading full pixels from this session's bytes.

    Raises:
        ImageError: the upload is not a usable image.
    """
    image = cached_image(sha256, lambda: image_from_upload(upload, filename))
    return reattached(image, upload)
