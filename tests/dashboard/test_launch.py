"""``python -m dashboard``'s start: sign-in and the allowed host from platform settings; refusals before listening."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from components.base import config
from dashboard.access import local_person
from dashboard.launch import StartRefused, launch_arguments

PLATFORM = {
    config.PUBLIC_URL.name: "https://cataract.clinic.example",
    config.OIDC_METADATA_URL.name: "https://id.clinic.example/.well-known/openid-configuration",
    config.OIDC_CLIENT_ID.name: "cataract-cam",
    config.OIDC_CLIENT_SECRET.name: 'se"cret\\x',
    config.COOKIE_SECRET.name: "a-long-cookie-secret",
}


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No platform settings, no override, a home without secrets; a checkout root of its own."""
    for setting in config.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "checkout"
    (root / ".streamlit").mkdir(parents=True)
    (root / ".streamlit" / "config.toml").write_text('[server]\naddress = "127.0.0.1"\n')
    return root


def test_locally_nothing_is_added_or_refused(bare: Path) -> None:
    assert launch_arguments(["--server.port", "8501"], bare) == ["--server.port", "8501"]


def test_beyond_this_computer_without_sign_in_it_refuses_unless_overridden(bare: Path, monkeypatch) -> None:
    with pytest.raises(StartRefused, match=r"refuses to serve patient data on 0\.0\.0\.0 without sign-in"):
        launch_arguments(["--server.address", "0.0.0.0"], bare)
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "10.1.2.3")
    with pytest.raises(StartRefused, match=r"on 10\.1\.2\.3"):
        launch_arguments([], bare)
    monkeypatch.setenv(config.ALLOW_NO_AUTH.name, "1")
    assert launch_arguments(["--server.address=0.0.0.0"], bare) == ["--server.address=0.0.0.0"]


def test_the_platforms_sign_in_becomes_a_private_secrets_file_and_its_host_is_allowed(bare: Path, monkeypatch) -> None:
    (bare / ".streamlit" / "secrets.toml").write_text('[access]\nrole_claim = "groups"\n')
    for name, value in PLATFORM.items():
        monkeypatch.setenv(name, value)
    args = launch_arguments(["--server.address", "0.0.0.0", "--server.port", "9000"], bare)
    files = [args[i + 1] for i, a in enumerate(args) if a == "--secrets.files"]
    assert files[0] == str(bare / ".streamlit" / "secrets.toml")  # the checkout's own first, the platform's last
    written = Path(files[1])
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    assert tomllib.loads(written.read_text())["auth"] == {
        "redirect_uri": "https://cataract.clinic.example/oauth2callback",
        "cookie_secret": "a-long-cookie-secret", "client_id": "cataract-cam", "client_secret": 'se"cret\\x',
        "server_metadata_url": "https://id.clinic.example/.well-known/openid-configuration"}
    hosts = [args[i + 1] for i, a in enumerate(args) if a == "--server.allowedHosts"]
    assert hosts == ["localhost", "127.0.0.1", "::1", "cataract.clinic.example"]
    written.unlink()
    written.parent.rmdir()


def test_a_bad_public_address_is_refused_in_one_sentence(bare: Path, monkeypatch) -> None:
    monkeypatch.setenv(config.PUBLIC_URL.name, "cataract.clinic.example")
    with pytest.raises(StartRefused, match=r"^CATARACT_CAM_PUBLIC_URL must be the dashboard's address"):
        launch_arguments([], bare)


def test_without_sign_in_beyond_this_computer_nobody_is_an_admin() -> None:
    assert local_person("Dr Bea").roles == {"clinician", "viewer", "admin"}
    beyond = local_person("Dr Bea", local=False)
    assert beyond.roles == {"clinician", "viewer"}
    assert not beyond.may("manage_models")
    assert beyond.may("review")
