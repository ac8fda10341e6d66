"""How ``python -m dashboard`` starts on a platform: sign-in and the allowed host from the platform's settings,
and a refusal before the server listens when it would serve patient data beyond this computer without sign-in.

A platform (the ``Procfile``) gives settings as environment variables, not files. With
``CATARACT_CAM_PUBLIC_URL`` the public host name joins the allowed Host names (the WebSocket refuses
any other with 403), and with the ``CATARACT_CAM_OIDC_*`` settings and ``CATARACT_CAM_COOKIE_SECRET``
an ``[auth]`` section is written to a private secrets file (0600, in a folder only this user reads)
that Streamlit reads after the checkout's own. Nothing here imports Streamlit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from components.base import config
from dashboard import access

__all__ = ["StartRefused", "launch_arguments", "served_over_https"]

_PLATFORM_AUTH: Final = (config.OIDC_METADATA_URL, config.OIDC_CLIENT_ID, config.OIDC_CLIENT_SECRET,
                         config.COOKIE_SECRET)
_LOCAL_HOSTS: Final = ("localhost", "127.0.0.1", "::1")


class StartRefused(config.ConfigError):
    """The dashboard must not start as asked; the message says why and what to do."""


def _option(argv: Sequence[str], name: str) -> list[str]:
    """The values given on the command line for ``--name VALUE`` or ``--name=VALUE``, in order."""
    values = []
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(f"--{name}="):
            values.append(arg.split("=", 1)[1])
    return values


def _without(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``--name VALUE`` and ``--name=VALUE``."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == f"--{name}":
            skip = True
        elif not arg.startswith(f"--{name}="):
            kept.append(arg)
    return kept


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _public_url() -> tuple[str, str] | None:
    url = config.text(config.PUBLIC_URL)
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StartRefused(f"{config.PUBLIC_URL.name} must be the dashboard's address, such as "
                           "https://cataract.clinic.example.")
    return f"{parts.scheme}://{parts.netloc}", parts.hostname


def platform_secrets() -> str | None:
    """The ``[auth]`` section from the platform's settings, as TOML, or None when none of them is set.

    Raises:
        StartRefused: some are set and others not, or ``CATARACT_CAM_PUBLIC_URL`` (the redirect) is missing.
    """
    given = {s.name: config.text(s) for s in _PLATFORM_AUTH}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    public = _public_url()
    if public is None:
        missing.append(config.PUBLIC_URL.name)
    if missing:
        raise StartRefused(f"Sign-in from the platform's settings needs {', '.join(missing)} as well.")
    assert public is not None
    values = {
        "redirect_uri": f"{public[0]}/oauth2callback",
        "cookie_secret": given[config.COOKIE_SECRET.name],
        "client_id": given[config.OIDC_CLIENT_ID.name],
        "client_secret": given[config.OIDC_CLIENT_SECRET.name],
        "server_metadata_url": given[config.OIDC_METADATA_URL.name],
    }
    return "[auth]\n" + "".join(f"{key} = {_toml_string(str(value))}\n" for key, value in values.items())


def _private_file(name: str, text: str) -> str:
    """``text`` in a new file only this user may read (0600, in a 0700 folder); its path."""
    folder = Path(tempfile.mkdtemp(prefix="cataract-cam-secrets-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # gone with the server
    path = folder / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def _merged_auth(files: Sequence[str]) -> dict[str, Any] | None:
    """The ``[auth]`` section Streamlit ends up with: the last file that has one wins, whole (a shallow merge)."""
    auth = None
    for name in files:
        try:
            with open(name, "rb") as handle:
                found = tomllib.load(handle).get("auth")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if isinstance(found, dict):
            auth = found
    return auth


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_string(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return _toml_string(str(value))


def _reauth_secrets(files: Sequence[str]) -> str | None:
    """The ``[auth]`` section again with a provider ``reauth`` that makes the person sign in again, as TOML.

    None when there is no ``[auth]`` with the default provider's keys, or it defines ``reauth`` itself.
    The provider is the clinic's own, asked with ``prompt=login`` and ``max_age=0`` (OpenID Connect
    Core 3.1.2.1): it must verify the person again before a signature, not reuse its session.
    """
    auth = _merged_auth(files)
    keys = ("client_id", "client_secret", "server_metadata_url")
    if auth is None or "reauth" in auth or not all(isinstance(auth.get(k), str) and auth[k] for k in keys):
        return None
    reauth = {**{k: auth[k] for k in keys}, "client_kwargs": {"prompt": "login"}, "authorize_params": {"max_age": 0}}
    return f"[auth]\n{_toml_lines(auth)}\n[auth.reauth]\n{_toml_lines(reauth)}"


def _toml_lines(section: dict[str, Any]) -> str:
    return "".join(f"{_toml_string(str(k))} = {_toml_value(v)}\n" for k, v in section.items())


def _configured_address(root: Path) -> str | None:
    try:
        with open(root / ".streamlit" / "config.toml", "rb") as handle:
            address = tomllib.load(handle).get("server", {}).get("address")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return address if isinstance(address, str) else None


def served_over_https(argv: Sequence[str], root: Path) -> bool:
    """Whether sign-in's redirect address (in the secrets ``argv`` names, or the defaults) is https://."""
    auth = _merged_auth(_option(argv, "secrets.files") or _default_secrets(root)) or {}
    redirect = auth.get("redirect_uri")
    return isinstance(redirect, str) and redirect.lower().startswith("https://")


def _default_secrets(root: Path) -> list[str]:
    """Streamlit's own secrets files, those that exist: the home folder's, then the checkout's."""
    return [str(p) for p in (Path.home() / ".streamlit" / "secrets.toml", root / ".streamlit" / "secrets.toml")
            if p.is_file()]


def launch_arguments(argv: Sequence[str], root: Path) -> list[str]:
    """``streamlit run``'s options for ``argv`` with the platform's sign-in and host name added.

    Raises:
        StartRefused: the platform's settings are incomplete, or the server would serve beyond this
            computer without sign-in and without the deliberate ``CATARACT_CAM_ALLOW_NO_AUTH=1``.
    """
    args = list(argv)
    secrets = _option(args, "secrets.files") or _default_secrets(root)
    platform = platform_secrets()
    if platform is not None:
        args = _without(args, "secrets.files")
        secrets = [*secrets, _private_file("platform-secrets.toml", platform)]
        for name in secrets:
            args += ["--secrets.files", name]
    reauth = _reauth_secrets(secrets)
    if reauth is not None:
        args = _without(args, "secrets.files")
        secrets = [*secrets, _private_file("reauth-secrets.toml", reauth)]
        for name in secrets:
            args += ["--secrets.files", name]
    public = _public_url()
    if public is not None and not _option(args, "server.allowedHosts"):
        for host in dict.fromkeys([*_LOCAL_HOSTS, public[1]]):
            args += ["--server.allowedHosts", host]
    addresses = _option(args, "server.address")
    address = addresses[-1] if addresses else config.text(config.STREAMLIT_ADDRESS) or _configured_address(root)
    refusal = access.bind_refusal(address, auth_configured=_merged_auth(secrets) is not None,
                                  allow_no_auth=config.flag(config.ALLOW_NO_AUTH))
    if refusal is not None:
        raise StartRefused(refusal)
    return args
