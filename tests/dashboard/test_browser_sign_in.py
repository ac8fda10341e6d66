"""Sign-in end to end: headless Chromium, the dashboard under `streamlit run`, a real OpenID provider on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from components.records import RecordStore
from tests.dashboard.support import chromium, dashboard_server, free_port, stop
from tests.support import CSDI, seeded_model

pytestmark = pytest.mark.browser

PATIENT = "P-0777"
CLINICIAN = {"sub": "dr-ada", "name": "Dr Ada Example", "roles": ["clinician"]}
VIEWER = {"sub": "vic-viewer", "name": "Vic Viewer", "roles": ["viewer"]}
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[str]:
    """oidc-provider-mock on a free port of 127.0.0.1 with a clinician and a viewer; its issuer URL."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("idp") / "idp.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port),
         "--user-claims", json.dumps(CLINICIAN), "--user-claims", json.dumps(VIEWER)],
        stdout=log, stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="module")
def app(provider: str, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The dashboard with [auth] pointing at the provider, a seeded model and one patient with one eye."""
    from components.imaging import load_rgb
    from models import save_checkpoint

    folder = tmp_path_factory.mktemp("signed_in")
    model = folder / "test_b0.pt"
    save_checkpoint(model, seeded_model(0), class_names=("Cataract", "Normal"), card={"name": "test-b0"})
    store = RecordStore(data_dir=folder / "data")
    try:
        store.create_patient(PATIENT, actor="test")
        store.add_exam(PATIENT, eye="OD", pixels=load_rgb(CSDI / "LZ-OD.jpg"), actor="test")
    finally:
        store.close()
    port = free_port()
    secrets = folder / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-test-cookie-secret-of-some-length"\n'
        'client_id = "cataract-cam"\nclient_secret = "test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    with dashboard_server(folder, port=port, env={"CATARACT_CAM_MODEL": str(model)},
                          args=["--secrets.files", str(secrets)]) as (url, _process):
        yield url, folder / "data"


def _sign_in(page, url: str, sub: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
    page.get_by_role("button", name=sub, exact=True).click(timeout=WAIT_MS)  # the provider's own page


def _open_patient(page) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Patient").first.click(timeout=WAIT_MS)
    page.get_by_role("option", name=PATIENT).click(timeout=WAIT_MS)
    page.get_by_text(f"Patient {PATIENT}", exact=True).wait_for(timeout=WAIT_MS)


def _radio(page, label: str, choice: str) -> None:
    page.locator('[data-testid="stRadio"]').filter(has_text=label).get_by_text(choice, exact=True).click()


def test_sign_in_sign_and_sign_out_in_a_real_browser(app, provider) -> None:
    url, data = app
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        page.goto(url)
        page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
        assert PATIENT not in page.content()  # an unauthenticated visit sees no patient data

        _sign_in(page, url, CLINICIAN["sub"])
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Dr Ada Example").wait_for(timeout=WAIT_MS)
        # The role, exactly (the sidebar's disclaimer also mentions "the reviewing clinician"), once.
        expect(sidebar.get_by_text("Clinician", exact=True)).to_have_count(1, timeout=WAIT_MS)
        assert page.get_by_label("Your name").count() == 0
        _open_patient(page)
        _radio(page, "Do you agree", "Agree")
        _radio(page, "Your finding", "Normal lens")
        _radio(page, "Grade", "None")
        page.get_by_role("button", name="Sign", exact=True).click()
        page.get_by_text("review version 1 signed").wait_for(timeout=WAIT_MS)

        sidebar.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="End session").click(timeout=WAIT_MS)  # the provider's page
        page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
        assert PATIENT not in page.content()

        _sign_in(page, url, VIEWER["sub"])
        page.locator('[data-testid="stSidebar"]').get_by_text("Vic Viewer").wait_for(timeout=WAIT_MS)
        _open_patient(page)
        page.get_by_text("Reading only: reviewing and signing need the clinician role.").wait_for(timeout=WAIT_MS)
        assert page.get_by_role("button", name="Sign", exact=True).count() == 0
        assert page.get_by_role("button", name="Save review").count() == 0
        assert page.get_by_text("Amend this review").count() == 0  # the signed review stays as it is

    store = RecordStore(data_dir=data)
    try:
        (exam,) = store.exams(PATIENT)
        (review,) = store.review_history(exam.id)
        assert review.status == "signed"
        assert (review.signer, review.signer_issuer, review.signer_subject) == ("Dr Ada Example", provider, "dr-ada")
        people = [(e.action, (e.actor_issuer, e.actor_subject)) for e in store.audit_trail(PATIENT)
                  if e.actor != "test"]
        assert ("signed", (provider, "dr-ada")) in people
        assert ("viewed", (provider, "vic-viewer")) in people
    finally:
        store.close()
