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
    assert "reauth" in tomllib.loads(Path(files[2]).read_text())["auth"]  # signing in again, below


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


def test_the_sign_in_cookie_is_secure_over_https_and_lives_no_longer_than_a_session(monkeypatch) -> None:
    from starlette.responses import Response
    from streamlit.web.server.starlette import starlette_auth_routes as routes

    from dashboard.cookies import harden_sign_in_cookie

    monkeypatch.setattr(routes, "get_cookie_secret", lambda: "a-test-cookie-secret")
    monkeypatch.setattr(routes, "_set_single_cookie", routes._set_single_cookie)  # put back after the test
    before = Response()
    routes._set_single_cookie(before, "_streamlit_user", '{"sub": "x"}')
    assert "Max-Age=2592000" in before.headers["set-cookie"]  # Streamlit's own: 30 days, not Secure
    assert "secure" not in before.headers["set-cookie"].lower()
    for secure in (True, False):
        assert harden_sign_in_cookie(secure=secure, max_age_seconds=12 * 3600)
        response = Response()
        routes._set_single_cookie(response, "_streamlit_user", '{"sub": "x"}')
        header = response.headers["set-cookie"]
        assert "Max-Age=43200" in header
        assert "HttpOnly" in header
        assert ("Secure" in header) is secure


def test_served_over_https_follows_the_sign_in_redirect(tmp_path: Path) -> None:
    from dashboard.launch import served_over_https

    plain, tls = tmp_path / "plain.toml", tmp_path / "tls.toml"
    plain.write_text('[auth]\nredirect_uri = "http://127.0.0.1:8501/oauth2callback"\n')
    tls.write_text('[auth]\nredirect_uri = "https://cataract.clinic.example/oauth2callback"\n')
    assert not served_over_https(["--secrets.files", str(plain)], tmp_path)
    assert served_over_https(["--secrets.files", str(plain), "--secrets.files", str(tls)], tmp_path)


def test_a_sign_in_is_timed_by_auth_time_else_iat_and_named_by_its_claims() -> None:
    from datetime import UTC, datetime

    from dashboard.access import AccessSettings, person_from_claims

    claims = {"iss": "https://idp.example", "sub": "dr-ada", "iat": 1_765_000_000, "nonce": "n1"}
    person = person_from_claims(claims, AccessSettings())
    assert person.authenticated_at == datetime.fromtimestamp(1_765_000_000, UTC)
    with_auth_time = person_from_claims({**claims, "auth_time": 1_764_999_000}, AccessSettings())
    assert with_auth_time.authenticated_at == datetime.fromtimestamp(1_764_999_000, UTC)
    again = person_from_claims({**claims, "iat": 1_765_000_600, "nonce": "n2"}, AccessSettings())
    assert person.session_id == person_from_claims(dict(claims), AccessSettings()).session_id  # a copied cookie
    assert again.session_id != person.session_id  # a new sign-in
    assert person_from_claims({**claims, "iat": "soon"}, AccessSettings()).authenticated_at is None


def test_signing_in_again_uses_the_clinics_provider_asked_to_verify_the_person_again(bare: Path) -> None:
    secrets = bare / "clinic-secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "https://cataract.clinic.example/oauth2callback"\n'
                       'cookie_secret = "c"\nclient_id = "cataract-cam"\nclient_secret = "s"\n'
                       'server_metadata_url = "https://id.clinic.example/.well-known/openid-configuration"\n'
                       '[access]\nrole_claim = "groups"\n')
    args = launch_arguments(["--secrets.files", str(secrets)], bare)
    files = [args[i + 1] for i, a in enumerate(args) if a == "--secrets.files"]
    assert files[0] == str(secrets)
    derived = Path(files[1])
    assert stat.S_IMODE(derived.stat().st_mode) == 0o600
    auth = tomllib.loads(derived.read_text())["auth"]
    # The whole [auth] again (Streamlit takes a later file's section whole), and the provider "reauth".
    assert {k: v for k, v in auth.items() if k != "reauth"} == tomllib.loads(secrets.read_text())["auth"]
    assert auth["reauth"] == {"client_id": "cataract-cam", "client_secret": "s",
                              "server_metadata_url": "https://id.clinic.example/.well-known/openid-configuration",
                              "client_kwargs": {"prompt": "login"}, "authorize_params": {"max_age": 0}}
    # A clinic that defines [auth.reauth] itself keeps it as it is.
    secrets.write_text(secrets.read_text().replace("[access]", '[auth.reauth]\nclient_id = "x"\n[access]'))
    assert launch_arguments(["--secrets.files", str(secrets)], bare) == ["--secrets.files", str(secrets)]
