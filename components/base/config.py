"""Every setting cataract-cam reads from its environment or its secrets file: name, kind, default, meaning.

This is the one module that reads ``os.environ`` and Streamlit's secrets; everything else asks it.
A setting is read when it is asked for (a changed variable takes effect at once), from the
environment first and then, for the few that may live there, from the secrets file. The
dashboard's secrets are what Streamlit was given (``--secrets.files``, or ``.streamlit/secrets.toml``);
outside the dashboard they are read from the files Streamlit would read by default.

``cataract-cam config`` prints :func:`effective` (secrets masked); the README's table is
:func:`markdown_table`, and a test holds the two together.
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from components.base.errors import CataractCamError

__all__ = [
    "ALLOW_NO_AUTH",
    "ANCHOR",
    "ANCHOR_RETAIN_DAYS",
    "AWS_ENDPOINT",
    "AWS_S3_ENDPOINT",
    "COOKIE_SECRET",
    "DASK",
    "DATA",
    "DB_URL",
    "DEBUG",
    "DICOMWEB_PASSWORD",
    "DICOMWEB_TOKEN",
    "DICOMWEB_URL",
    "DICOMWEB_USER",
    "IMAGE_STORE",
    "LENS_FINDER",
    "LOG_JSON",
    "MODEL",
    "OIDC_CLIENT_ID",
    "OIDC_CLIENT_SECRET",
    "OIDC_METADATA_URL",
    "ORGANIZATION",
    "PUBLIC_URL",
    "RETENTION_YEARS",
    "S3_BUCKET",
    "S3_ENDPOINT",
    "SECRET_SECTIONS",
    "SESSION_IDLE_MINUTES",
    "SESSION_MAX_HOURS",
    "SETTINGS",
    "SIGN_FRESH_MINUTES",
    "STREAMLIT_ADDRESS",
    "ConfigError",
    "Effective",
    "Setting",
    "child_environment",
    "choice",
    "effective",
    "flag",
    "integer",
    "markdown_table",
    "number",
    "path",
    "secrets",
    "secrets_section",
    "text",
]


class ConfigError(CataractCamError, ValueError):
    """A setting holds a value it does not accept; the message names the setting and what it expects."""


@dataclass(frozen=True)
class Setting:
    """One setting: its variable name, what it means, its default as a person reads it, and how it is read."""

    name: str
    meaning: str
    default: str
    kind: str = "text"  # text, path, url, flag, integer, number, choice
    choices: tuple[str, ...] = ()
    secret: bool = False  # never printed
    in_secrets: bool = False  # may also be set in the secrets file, under the same name


DATA: Final = Setting("CATARACT_CAM_DATA", "the data folder: the records database, photographs, runs",
                      "data/ in the checkout", "path")
DB_URL: Final = Setting("CATARACT_CAM_DB_URL", "the records database (SQLAlchemy URL, e.g. postgresql+psycopg://...)",
                        "SQLite in the data folder", "url")
MODEL: Final = Setting("CATARACT_CAM_MODEL", "the checkpoint the dashboard starts on; no demo patients with it",
                       "the shipped demo model", "path")
LENS_FINDER: Final = Setting("CATARACT_CAM_LENS_FINDER", "how the pupil is found in external and slit-lamp photographs",
                             "learned", "choice", ("learned", "circle"))
RETENTION_YEARS: Final = Setting("CATARACT_CAM_RETENTION_YEARS", "years a record is kept after its last exam (1-100)",
                                 "10", "integer")
IMAGE_STORE: Final = Setting("CATARACT_CAM_IMAGE_STORE", "where the record store keeps photographs", "folder",
                             "choice", ("folder", "s3"))
S3_BUCKET: Final = Setting("CATARACT_CAM_S3_BUCKET", "the bucket of the s3 image store", "none")
S3_ENDPOINT: Final = Setting("CATARACT_CAM_S3_ENDPOINT",
                             "the S3 endpoint of the image store and of s3:// runs (--s3-endpoint wins)",
                             "boto3's own (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS)", "url")
AWS_S3_ENDPOINT: Final = Setting("AWS_ENDPOINT_URL_S3", "boto3's own S3 endpoint, used when none is set above",
                                 "none", "url")
AWS_ENDPOINT: Final = Setting("AWS_ENDPOINT_URL", "boto3's own endpoint for every AWS service", "none", "url")
DASK: Final = Setting("CATARACT_CAM_DASK", "the Dask cluster the Batch page runs on (local:N or tcp://HOST:PORT)",
                      "none: runs in the dashboard")
DICOMWEB_URL: Final = Setting("CATARACT_CAM_DICOMWEB_URL", "the PACS's DICOMweb root (PACS page, Send to PACS)",
                              "none", "url", in_secrets=True)
DICOMWEB_USER: Final = Setting("CATARACT_CAM_DICOMWEB_USER", "the PACS user for basic authentication", "none",
                               in_secrets=True)
DICOMWEB_PASSWORD: Final = Setting("CATARACT_CAM_DICOMWEB_PASSWORD", "the PACS password", "none", secret=True,
                                   in_secrets=True)
DICOMWEB_TOKEN: Final = Setting("CATARACT_CAM_DICOMWEB_TOKEN", "a bearer token for the PACS instead of a password",
                                "none", secret=True, in_secrets=True)
ORGANIZATION: Final = Setting("CATARACT_CAM_ORGANIZATION", "the signer's organization in DICOM SR and FHIR", "none")
DEBUG: Final = Setting("CATARACT_CAM_DEBUG", "1: the command line shows a traceback for a fault of the program",
                       "unset: one line", "flag")
LOG_JSON: Final = Setting("CATARACT_CAM_LOG_JSON",
                          "1: the command line writes the operator's JSON log lines on stderr too (the dashboard "
                          "always does)", "unset: not from the command line", "flag")
ANCHOR: Final = Setting("CATARACT_CAM_ANCHOR",
                        "where the chain's head is written outside the database after each signature: "
                        "a file (appended to) or s3://bucket/prefix (objects under object lock)", "none")
ANCHOR_RETAIN_DAYS: Final = Setting("CATARACT_CAM_ANCHOR_RETAIN_DAYS",
                                    "days an s3:// anchor object stays locked (compliance mode; 1-36500)",
                                    "3650", "integer")
PUBLIC_URL: Final = Setting("CATARACT_CAM_PUBLIC_URL",
                            "the address a platform serves the dashboard at (https://name): its allowed host "
                            "name and sign-in's redirect", "none", "url")
OIDC_METADATA_URL: Final = Setting("CATARACT_CAM_OIDC_METADATA_URL",
                                   "sign-in from the platform's settings: the provider's discovery document",
                                   "none", "url")
OIDC_CLIENT_ID: Final = Setting("CATARACT_CAM_OIDC_CLIENT_ID", "sign-in from the platform's settings: the client ID",
                                "none")
OIDC_CLIENT_SECRET: Final = Setting("CATARACT_CAM_OIDC_CLIENT_SECRET",
                                    "sign-in from the platform's settings: the client secret", "none", secret=True)
COOKIE_SECRET: Final = Setting("CATARACT_CAM_COOKIE_SECRET",
                               "sign-in from the platform's settings: the secret that signs the identity cookie",
                               "none", secret=True)
SIGN_FRESH_MINUTES: Final = Setting("CATARACT_CAM_SIGN_FRESH_MINUTES",
                                    "with sign-in, how old (minutes, 0.1-1440) a sign-in may be to sign; older "
                                    "asks the provider again", "5", "number")
SESSION_IDLE_MINUTES: Final = Setting("CATARACT_CAM_SESSION_IDLE_MINUTES",
                                      "with sign-in, minutes without activity that end a session (1-1440)", "15",
                                      "integer")
SESSION_MAX_HOURS: Final = Setting("CATARACT_CAM_SESSION_MAX_HOURS",
                                   "with sign-in, hours after signing in that end a session (1-168)", "12", "integer")
STREAMLIT_ADDRESS: Final = Setting("STREAMLIT_SERVER_ADDRESS",
                                   "Streamlit's own bind address, read to refuse serving beyond this computer "
                                   "without sign-in", ".streamlit/config.toml: 127.0.0.1")
ALLOW_NO_AUTH: Final = Setting("CATARACT_CAM_ALLOW_NO_AUTH",
                               "1: serve beyond 127.0.0.1 without [auth], only behind a platform's own login",
                               "unset: refuse", "flag")

SETTINGS: Final[tuple[Setting, ...]] = (
    DATA, DB_URL, MODEL, LENS_FINDER, RETENTION_YEARS, IMAGE_STORE, S3_BUCKET, S3_ENDPOINT, AWS_S3_ENDPOINT,
    AWS_ENDPOINT, DASK, DICOMWEB_URL, DICOMWEB_USER, DICOMWEB_PASSWORD, DICOMWEB_TOKEN, ORGANIZATION, ANCHOR,
    ANCHOR_RETAIN_DAYS, PUBLIC_URL, OIDC_METADATA_URL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, COOKIE_SECRET,
    SIGN_FRESH_MINUTES, SESSION_IDLE_MINUTES, SESSION_MAX_HOURS, STREAMLIT_ADDRESS, ALLOW_NO_AUTH, DEBUG, LOG_JSON,
)
"""Every environment variable the software reads, in the order the README lists them."""

SECRET_SECTIONS: Final[Mapping[str, Mapping[str, bool]]] = {
    # st.login's own section: key -> whether its value is secret.
    "auth": {"redirect_uri": False, "cookie_secret": True, "client_id": False, "client_secret": True,
             "server_metadata_url": False},
    # Who may do what (dashboard/access.py): the role claim and the allow-lists.
    "access": {"role_claim": False, "roles": False},
}
"""The sections of the secrets file the software reads, beyond the settings marked ``in_secrets``."""

_CHECKOUT: Final = Path(__file__).resolve().parents[2]
_TRUE: Final = frozenset({"1"})
_MASK: Final = "********"


def _environ() -> Mapping[str, str]:
    return os.environ


def secrets() -> Mapping[str, Any]:
    """The secrets file as a mapping (empty when there is none or it cannot be read).

    In the dashboard, what Streamlit was given; elsewhere the files Streamlit reads by default:
    ``~/.streamlit/secrets.toml``, then the checkout's ``.streamlit/secrets.toml`` over it.
    """
    streamlit = sys.modules.get("streamlit")  # loaded only in the dashboard: never imported from here
    if streamlit is not None:
        try:
            return dict(streamlit.secrets.to_dict())
        except Exception:  # no secrets file, or one Streamlit cannot parse: Streamlit raises its own kinds
            return {}
    found: dict[str, Any] = {}
    for file in (Path.home() / ".streamlit" / "secrets.toml", _CHECKOUT / ".streamlit" / "secrets.toml"):
        try:
            found.update(tomllib.loads(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
    return found


def secrets_section(name: str) -> Mapping[str, Any] | None:
    """A section of the secrets file (``auth``, ``access``), or None when it is absent or empty.

    Raises:
        KeyError: ``name`` is not one of :data:`SECRET_SECTIONS`.
    """
    if name not in SECRET_SECTIONS:
        raise KeyError(f"unknown secrets section {name!r}; expected one of {', '.join(SECRET_SECTIONS)}")
    section = secrets().get(name)
    return section if isinstance(section, Mapping) and section else None


def _raw(setting: Setting) -> tuple[str | None, str]:
    """The setting's text and where it came from: "environment", "secrets" or "default"."""
    value = _environ().get(setting.name, "").strip()
    if value:
        return value, "environment"
    if setting.in_secrets:
        stored = secrets().get(setting.name)
        if stored is not None and str(stored).strip():
            return str(stored).strip(), "secrets"
    return None, "default"


def text(setting: Setting) -> str | None:
    """The setting as text, stripped; None when it is not set."""
    return _raw(setting)[0]


def path(setting: Setting) -> Path | None:
    """The setting as a path with ``~`` expanded; None when it is not set."""
    value = text(setting)
    return Path(value).expanduser() if value else None


def flag(setting: Setting) -> bool:
    """Whether a flag is set to ``1`` (anything else, ``true`` included, leaves it off: a deliberate act)."""
    return text(setting) in _TRUE


def integer(setting: Setting, low: int, high: int, unit: str = "") -> int | None:
    """The setting as a whole number (of ``unit``) from ``low`` to ``high``; None when it is not set.

    Raises:
        ConfigError: it is set to anything else.
    """
    value = text(setting)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        of = f" of {unit}" if unit else ""
        raise ConfigError(f"{setting.name} must be a whole number{of} from {low} to {high}.")
    return int(value)


def number(setting: Setting, low: float, high: float, unit: str = "") -> float | None:
    """The setting as a number (of ``unit``) from ``low`` to ``high``, decimals allowed; None when it is not set.

    Raises:
        ConfigError: it is set to anything else.
    """
    value = text(setting)
    if value is None:
        return None
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not low <= parsed <= high:  # NaN fails too
        of = f" of {unit}" if unit else ""
        raise ConfigError(f"{setting.name} must be a number{of} from {low:g} to {high:g}.")
    return parsed


def choice(setting: Setting) -> str:
    """The setting's choice, lower case; its default (the first choice) when it is not set.

    Raises:
        ConfigError: it names none of the choices.
    """
    value = (text(setting) or setting.choices[0]).lower()
    if value not in setting.choices:
        raise ConfigError(f"{setting.name} is {value!r}; expected one of {', '.join(setting.choices)}.")
    return value


def child_environment(changes: Mapping[Setting, str]) -> dict[str, str]:
    """This process's environment with ``changes`` applied, for a program it starts (the dashboard)."""
    environment = dict(_environ())
    environment.update({setting.name: value for setting, value in changes.items()})
    return environment


def _shown(setting: Setting, value: str | None) -> str:
    if value is None:
        return f"({setting.default})"
    if setting.secret:
        return _MASK
    if setting.kind == "url":
        parts = urlsplit(value)
        if parts.password:  # a database or PACS URL may carry a password
            netloc = f"{parts.username}:{_MASK}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
    return value


@dataclass(frozen=True)
class Effective:
    """A setting as it is in force now: its name, its value as shown (secrets masked), where it came from."""

    name: str
    value: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "value": self.value, "source": self.source}


def effective() -> list[Effective]:
    """Every setting and every key of the secrets sections, with its value (masked when secret) and its source."""
    rows = []
    for setting in SETTINGS:
        value, source = _raw(setting)
        rows.append(Effective(setting.name, _shown(setting, value), source))
    for name, keys in SECRET_SECTIONS.items():
        section = secrets_section(name) or {}
        for key, secret in keys.items():
            present = key in section
            shown = (_MASK if secret else _plain(section[key])) if present else "(not set)"
            rows.append(Effective(f"[{name}] {key}", shown, "secrets" if present else "default"))
    return rows


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} = {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def markdown_table() -> str:
    """The settings as the README's table: variable, meaning, default."""
    lines = ["| variable | what it sets | default |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        where = " (environment or secrets)" if setting.in_secrets else ""
        secret = " Secret: never printed." if setting.secret else ""
        lines.append(f"| `{setting.name}` | {setting.meaning}{where}.{secret} | {setting.default} |")
    return "\n".join(lines)
