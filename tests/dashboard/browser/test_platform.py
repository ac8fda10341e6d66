"""The Procfile started as a platform starts it: every interface, $PORT, settings from the environment.

Without sign-in among the platform's settings it refuses before it listens; with them it serves the
platform's own host name (a WebSocket under that name is accepted, a foreign one refused) and asks for
sign-in; a signed-in person gets the roles their token names, and no one is handed the admin role.
This test, alone in the suite, binds every interface: that is what the Procfile does.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.dashboard.browser.conftest import PEOPLE, VIEWPORT
from tests.dashboard.browser.support import WAIT_MS
from tests.dashboard.support import CHROMIUM, free_port, stop, wait_healthy
from tests.dashboard.test_serving import _websocket_status
from tests.support import ROOT

HOST = "cataract-platform.test"


def _procfile_web(port: int) -> list[str]:
    (line,) = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    command = shlex.split(line.removeprefix("web:").replace("$PORT", str(port)))
    assert command[:3] == ["python", "-m", "dashboard"]
    return [sys.executable, *command[1:]]


def _platform_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CATARACT_CAM_", "STREAMLIT_"))}
    return {**environ, "PYTHONPATH": str(ROOT), "CATARACT_CAM_DATA": str(tmp_path / "data"), **settings}


def test_the_procfile_never_turns_sign_in_off_itself() -> None:
    text = (ROOT / "Procfile").read_text()
    assert "ALLOW_NO_AUTH" not in text
    assert "--server.address 0.0.0.0" in text


def test_without_sign_in_settings_the_platform_start_refuses(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(_procfile_web(port), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_platform_env(tmp_path, CATARACT_CAM_PUBLIC_URL=f"https://{HOST}"))
    assert done.returncode == 2
    assert "refuses to serve patient data on 0.0.0.0 without sign-in" in done.stderr
    assert "Traceback" not in done.stderr
    # Half the sign-in settings is refused too, naming what is missing.
    done = subprocess.run(_procfile_web(port), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_platform_env(tmp_path, CATARACT_CAM_OIDC_CLIENT_ID="cataract-cam"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "cataract-cam dashboard: Sign-in from the platform's settings needs CATARACT_CAM_OIDC_METADATA_URL, "
        "CATARACT_CAM_OIDC_CLIENT_SECRET, CATARACT_CAM_COOKIE_SECRET, CATARACT_CAM_PUBLIC_URL as well.")


def test_with_sign_in_settings_it_serves_the_platform_host_and_asks_for_sign_in(tmp_path: Path, provider: str,
                                                                                 browser) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(_procfile_web(port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_platform_env(
        tmp_path, CATARACT_CAM_PUBLIC_URL=f"http://{HOST}:{port}",
        CATARACT_CAM_OIDC_METADATA_URL=f"{provider}/.well-known/openid-configuration",
        CATARACT_CAM_OIDC_CLIENT_ID="cataract-cam", CATARACT_CAM_OIDC_CLIENT_SECRET="test-secret",
        CATARACT_CAM_COOKIE_SECRET="a-platform-cookie-secret-of-some-length"))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, tmp_path / "server.log")
        # The platform's host name is allowed (before the fix: 403), any other name still refused.
        assert _websocket_status(url, f"{HOST}:{port}") == "HTTP/1.1 101 Switching Protocols"
        assert _websocket_status(url, f"attacker.example:{port}") == "HTTP/1.1 403 Forbidden"
        # A browser of its own (the suite's Playwright), where the platform's name leads to this machine.
        mapped = browser.browser_type.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  f"--host-resolver-rules=MAP {HOST} 127.0.0.1"])
        try:
            page = mapped.new_context(viewport=VIEWPORT).new_page()
            page.goto(f"http://{HOST}:{port}/")
            page.get_by_text("Sign in with your clinic account to review patients.").wait_for(timeout=WAIT_MS)
            assert page.get_by_text("DEMO-00").count() == 0
            page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
            person = PEOPLE["no role"]
            page.get_by_role("button", name=person["sub"], exact=True).click(timeout=WAIT_MS)
            # Back under the platform's name, signed in, and given nothing the token does not name.
            page.get_by_text("Your account has no role in this dashboard").wait_for(timeout=WAIT_MS)
            assert page.url.startswith(f"http://{HOST}:{port}/")
            assert page.get_by_text("Signed in as Nora Nobody.").count() == 1
        finally:
            mapped.close()
    finally:
        stop(process)
        log.close()
