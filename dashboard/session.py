"""One person's session of the dashboard: who they are, their settings, their model, their messages.

Everything here reads or writes ``st.session_state`` or the signed-in user (``st.user``); what all
sessions share lives in ``dashboard.resources``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import streamlit as st

from components.base import config
from components.records import Identity, PatientRecord, RecordStore
from components.screening.vocabulary import EYE_LABELS
from components.workflows.review import PREDICTED, HeldUpload, ReviewImage, image_from_upload, reattached
from components.workflows.runs import Look
from dashboard import access, resources
from dashboard.present import plain
from models import DEMO_MODEL_PATH, CheckpointError, Classifier

__all__ = [
    "SETTINGS",
    "ModelChoice",
    "actor",
    "actor_name",
    "bind_refusal",
    "cached_image",
    "classifier",
    "flash",
    "keep_settings",
    "look",
    "model_choice",
    "model_source",
    "open_patient",
    "person",
    "resume_signature",
    "show_flashes",
    "sign_in_again",
    "sign_in_ended",
    "sign_out",
    "signed_in",
    "upload_image",
]

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


def keep_settings() -> None:
    """Give every setting its default once (call at the top of every run)."""
    for key, default in SETTINGS.items():
        st.session_state.setdefault(key, default)


# --- who is using the app ---------------------------------------------------------------------


def bind_refusal() -> str | None:
    """Why this server must not serve (bound beyond this computer without sign-in), or None."""
    return access.bind_refusal(st.get_option("server.address"), auth_configured=resources.auth_configured(),
                               allow_no_auth=config.flag(config.ALLOW_NO_AUTH))


def signed_in() -> bool:
    """Whether an identity provider has signed this browser in (``st.user``)."""
    return bool(st.user.get("is_logged_in", False))


def person() -> access.Person:
    """This session's person: the signed-in identity with its roles, or the typed name without sign-in.

    Raises:
        ValueError: sign-in is configured and the identity provider's token lacks an issuer or subject.
    """
    if not resources.auth_configured():
        return access.local_person(str(st.session_state.get("reviewer", "")),
                                   local=access.is_local_address(st.get_option("server.address")))
    if not signed_in():
        return access.Person(name="", issuer=None, subject=None, roles=frozenset())
    settings = access.AccessSettings.from_mapping(config.secrets_section("access"))
    return access.person_from_claims(st.user.to_dict(), settings)


ENDED_SENTENCES = {
    "signed out": "You signed out in this browser. Sign in again to go on.",
    "idle": "Your session ended after {idle} minutes without activity. Sign in again to go on.",
    "expired": "Your session ended {hours} hours after you signed in. Sign in again to go on.",
}


def _session_limits() -> tuple[int, int]:
    idle = config.integer(config.SESSION_IDLE_MINUTES, 1, 1440, unit="minutes") or 15
    hours = config.integer(config.SESSION_MAX_HOURS, 1, 168, unit="hours") or 12
    return idle, hours


def sign_in_ended() -> str | None:
    """Why this browser's sign-in no longer lets it in (signed out, idle, too old), as a sentence; None if it does.

    Each run counts as activity. The session is kept in the record store, so every server replica
    agrees, and a copy of the sign-in cookie taken before sign-out stays refused.
    """
    p = person()
    if not p.authenticated or p.session_id is None:
        return None
    idle, hours = _session_limits()
    reason = resources.store().session_ended(p.session_id, actor(), idle=timedelta(minutes=idle),
                                             longest=timedelta(hours=hours))
    return None if reason is None else ENDED_SENTENCES[reason].format(idle=idle, hours=hours)


def sign_out() -> None:
    """End this sign-in for good (its cookie, even copied, no longer lets anyone in), then sign out at the provider."""
    p = person()
    if p.authenticated and p.session_id is not None:
        resources.store().end_session(p.session_id)
    st.logout()


def sign_in_again(pseudo_id: str, eye: str) -> None:
    """Send the person to the provider to prove who they are again; back here, the page opens this eye to sign."""
    p = person()
    if p.authenticated and p.session_id is not None:
        resources.remember_signature(str(p.issuer), str(p.subject), pseudo_id, eye, sign_in=p.session_id)
        provider = resources.reauth_provider()
        if provider is not None:
            st.login(provider)
        else:  # `streamlit run` without the launcher: the clinic's provider as configured
            st.login()


def resume_signature() -> None:
    """After signing in again to sign, open the patient it was for and say what to do."""
    p = person()
    if not p.authenticated or p.session_id is None:
        return
    pending = resources.take_pending_signature(str(p.issuer), str(p.subject), sign_in=p.session_id)
    if pending is not None:
        pseudo_id, eye = pending
        st.session_state["current_patient"] = pseudo_id
        flash(f"You signed in again. Sign the {EYE_LABELS.get(eye, eye)} review now.", "info")


def actor() -> Identity:
    """Who the audit trail names for this session's actions, and who writes and signs its reviews."""
    return access.identity(person())


def actor_name() -> str:
    """The reviewer as a report prints it: ``name <issuer|subject>``, or ``name (unauthenticated)``."""
    return actor().label


def open_patient(store: RecordStore, pseudo_id: str) -> PatientRecord:
    """The patient; the first opening in this session is logged as a view (a rerun is not a new view)."""
    opened: set[str] = st.session_state.setdefault("_opened_patients", set())
    if pseudo_id in opened:
        return store.get_patient(pseudo_id)
    patient = store.open_patient(pseudo_id, viewer=actor())
    opened.add(pseudo_id)
    return patient


# --- messages across a rerun ------------------------------------------------------------------


def flash(message: str, kind: str = "success") -> None:
    """Queue a message to show at the top of the next run (a rerun wipes what this run drew)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    """Show and forget the queued messages."""
    for kind, message in st.session_state.pop("_flash", []):
        {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}[kind](message)


# --- this session's model ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """Which checkpoint this session uses: a file on the server or an uploaded one."""

    kind: str  # "file" or "upload"
    path: str | None = None
    sha256: str | None = None
    label: str = ""


def model_choice() -> ModelChoice:
    """This session's checkpoint choice (the default until the user picks another)."""
    choice = st.session_state.get("model_choice")
    if isinstance(choice, ModelChoice):
        return choice
    path = resources.default_model_path()
    return ModelChoice("file", path=str(path), label=path.name)


def model_source() -> str | bytes | None:
    """What a cluster's workers load: this session's checkpoint file, or the uploaded checkpoint's bytes."""
    choice = model_choice()
    if choice.kind == "upload":
        data = st.session_state.get("_model_upload")
        return data if isinstance(data, bytes) else None
    return choice.path


def _missing_model_message(choice: ModelChoice) -> str:
    if choice.path is not None and Path(choice.path) == DEMO_MODEL_PATH:
        return ("The shipped demo model (models/weights/cataract_b0_demo.pt) is not installed yet. "
                "Choose or upload a checkpoint on the Model page.")
    return ("The model file configured for this dashboard cannot be found. "
            "Choose or upload a checkpoint on the Model page.")


def classifier() -> tuple[Classifier | None, str | None]:
    """This session's classifier, or None and one sentence saying why there is none."""
    choice = model_choice()
    try:
        if choice.kind == "upload":
            data = st.session_state.get("_model_upload")
            if not isinstance(data, bytes):
                return None, "The uploaded model is no longer available; upload it again on the Model page."
            return resources.load_checkpoint_bytes(data), None
        assert choice.path is not None
        path = Path(choice.path)
        if not path.exists():
            return None, _missing_model_message(choice)
        return resources.load_checkpoint_file(path), None
    except CheckpointError as error:
        # The message may quote a checkpoint's own text: escaped, as st.error renders Markdown.
        return None, f"The selected model cannot be used: {plain(str(error))}"


def look() -> Look:
    """The Review page's method, colormap and transparency, which the other pages draw with too."""
    return Look(method=str(st.session_state.get("method", "gradcam")),
                colormap=str(st.session_state.get("colormap", "jet")),
                alpha=float(st.session_state.get("alpha", 0.5)))


# --- photographs --------------------------------------------------------------------------------


def cached_image(sha256: str, load: Callable[[], ReviewImage]) -> ReviewImage:
    """The photograph's display copy from the shared cache, or loaded and cached (``load`` may raise)."""
    cache = resources.image_cache()
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
