"""Fixtures of the browser suite: Chromium, the dashboard on the demo model and patients (with and without sign-in),
a real OpenID Connect provider and a real PACS, each started once for this folder on 127.0.0.1 and stopped by PID
when its last test ends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.filewriter import dcmwrite

from tests.dashboard.browser.support import WAIT_MS, Served, Tab, write_auth_secrets
from tests.dashboard.support import chromium, dashboard_server, free_port, stop
from tests.interop_support import OrthancServer, eye_photograph, start_orthanc

VIEWPORT = {"width": 1440, "height": 1600}
# The people the provider knows: a role each, and one with none. Roles come from the token's "roles" claim.
PEOPLE = {
    "clinician": {"sub": "dr-ada", "name": "Dr Ada Example", "roles": ["clinician"]},
    "viewer": {"sub": "vic-viewer", "name": "Vic Viewer", "roles": ["viewer"]},
    "admin": {"sub": "ida-admin", "name": "Ida Admin", "roles": ["admin"]},
    "no role": {"sub": "nora-none", "name": "Nora Nobody"},
}
PACS_PATIENT = "PACS-0042"  # the patient ID the PACS study is filed under


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="package")
def pacs(tmp_path_factory) -> Iterator[OrthancServer]:
    """Debian's Orthanc with DICOMweb, holding one study of an eye photograph."""
    folder = tmp_path_factory.mktemp("browser_pacs")
    server = start_orthanc(folder / "orthanc")
    try:
        path = folder / "od.dcm"
        dcmwrite(path, eye_photograph("OD", seed=5, patient_id=PACS_PATIENT, size=160), enforce_file_format=True)
        response = requests.post(f"{server.rest}/instances", data=path.read_bytes(), timeout=30)
        response.raise_for_status()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def demo_app(tmp_path_factory, pacs: OrthancServer) -> Iterator[Served]:
    """`make run`'s dashboard: the shipped demo model and the six demo patients, no sign-in, a PACS configured."""
    folder = tmp_path_factory.mktemp("demo_app")
    with dashboard_server(folder, env={"CATARACT_CAM_DICOMWEB_URL": pacs.dicomweb}) as (url, process):
        yield Served(url, process, folder / "server.log", folder / "data")


@pytest.fixture(scope="package")
def provider(tmp_path_factory) -> Iterator[str]:
    """oidc-provider-mock on a free port of 127.0.0.1 knowing ``PEOPLE``; its issuer URL."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("idp") / "idp.log").open("wb")
    claims = [arg for person in PEOPLE.values() for arg in ("--user-claims", json.dumps(person))]
    process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                str(port), *claims], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, "the identity provider exited"
                assert time.monotonic() < deadline, "the identity provider did not start within 60 s"
                time.sleep(0.2)
        yield issuer
    finally:
        stop(process)
        log.close()


@pytest.fixture(scope="package")
def clinic_app(tmp_path_factory, provider: str) -> Iterator[Served]:
    """The dashboard with sign-in ([auth] pointing at the provider), the demo model and the demo patients."""
    folder = tmp_path_factory.mktemp("clinic_app")
    port = free_port()
    secrets = write_auth_secrets(folder / "secrets.toml", port=port, provider=provider,
                                 cookie_secret="a-test-cookie-secret-of-some-length")
    with dashboard_server(folder, port=port, args=["--secrets.files", str(secrets)]) as (url, process):
        yield Served(url, process, folder / "server.log", folder / "data")


@pytest.fixture
def new_tab(browser, tmp_path: Path) -> Iterator[Callable[..., Tab]]:
    """Opens a tab in a fresh browser context (its own cookies) on a dashboard; all are closed at the end.

    A step that fails saves a full-page screenshot under this test's own temporary folder.
    """
    contexts: list[Any] = []

    def open_tab(served: Served, who: str = "visitor") -> Tab:
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)  # a click waits for a button a slow run has not enabled yet
        contexts.append(context)
        return Tab(context.new_page(), served, tmp_path / "screenshots", who.replace(" ", "-"))

    yield open_tab
    for context in contexts:
        context.close()
