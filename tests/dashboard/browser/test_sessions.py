"""Signatures a clinic can defend, in a real browser against a real OpenID Connect provider:

- a sign-in older than the limit does not sign: the provider's login page is shown, and the
  signature is recorded only after the clinician has signed in there again;
- after sign-out, a copy of the sign-in cookie taken before it lets nobody in.

Before issue 21 the signature was one click under whatever session was open, and a copied cookie
signed in again after sign-out for 30 days.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.records import RecordStore
from tests.dashboard.browser.conftest import PEOPLE
from tests.dashboard.browser.support import WAIT_MS, Served, write_auth_secrets
from tests.dashboard.browser.test_journeys import _open_patient, _visible_review_forms
from tests.dashboard.support import dashboard_server, free_port

FRESH_S = 30  # CATARACT_CAM_SIGN_FRESH_MINUTES=0.5 on this server
PATIENT = "DEMO-002"


@pytest.fixture(scope="module")
def strict_app(tmp_path_factory, provider: str) -> Iterator[Served]:
    """The dashboard with sign-in, taking signatures only within 30 s of a sign-in."""
    folder = tmp_path_factory.mktemp("strict_app")
    port = free_port()
    secrets = write_auth_secrets(folder / "secrets.toml", port=port, provider=provider,
                                 cookie_secret="another-test-cookie-secret-of-some-length")
    with dashboard_server(folder, port=port, args=["--secrets.files", str(secrets)],
                          env={"CATARACT_CAM_SIGN_FRESH_MINUTES": str(FRESH_S / 60)}) as (url, process):
        yield Served(url, process, folder / "server.log", folder / "data")


def _sign_in(tab, role: str) -> float:
    tab.open()
    tab.page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
    tab.page.get_by_role("button", name=PEOPLE[role]["sub"], exact=True).click(timeout=WAIT_MS)  # the provider
    tab.page.locator('[data-testid="stSidebar"]').get_by_text(PEOPLE[role]["name"]).wait_for(timeout=WAIT_MS)
    tab.settle()
    return time.monotonic()


def _right_eye_reviews(served: Served) -> list[tuple[int, str, str | None]]:
    store = RecordStore(data_dir=served.data)
    try:
        exam = next(e for e in store.exams(PATIENT) if e.eye == "OD")
        return [(r.version, r.status, r.signer_subject) for r in store.review_history(exam.id)]
    finally:
        store.close()


def test_an_old_sign_in_signs_only_after_signing_in_again(strict_app: Served, provider: str, new_tab) -> None:
    tab = new_tab(strict_app, "clinician-aged")
    with tab.step("sign in as a clinician"):
        signed_in = _sign_in(tab, "clinician")
    with tab.step(f"open {PATIENT}"):
        _open_patient(tab, PATIENT)
    time.sleep(max(0.0, signed_in + FRESH_S + 2 - time.monotonic()))  # the sign-in ages past the limit
    with tab.step("press Sign with the aged sign-in"):
        form = _visible_review_forms(tab).first
        tab.radio("Do you agree", "Agree", within=form)
        tab.radio("Your finding", "Normal lens", within=form)
        tab.radio("Grade", "None", within=form)
        form.get_by_role("button", name="Sign", exact=True).click()
        tab.page.get_by_text("Right eye (OD): your review is saved as a draft, not signed yet.").wait_for(
            timeout=WAIT_MS)
        tab.page.get_by_text("sign in again to sign: your sign-in is").first.wait_for(timeout=WAIT_MS)
    assert _right_eye_reviews(strict_app) == [(1, "reviewed", None)]  # nothing signed yet
    with tab.step("sign in again at the provider"):
        tab.page.get_by_role("button", name="Sign in again to sign").click()
        # The provider's own page asks who this is: the app cannot skip it.
        tab.page.get_by_role("button", name=PEOPLE["clinician"]["sub"], exact=True).wait_for(timeout=WAIT_MS)
        assert tab.page.url.startswith(provider)
        assert _right_eye_reviews(strict_app) == [(1, "reviewed", None)]
        tab.page.get_by_role("button", name=PEOPLE["clinician"]["sub"], exact=True).click()
        tab.page.get_by_text("You signed in again. Sign the Right eye (OD) review now.").wait_for(timeout=WAIT_MS)
        tab.settle()
    with tab.step("sign, now with a fresh sign-in"):
        tab.page.get_by_role("heading", name=f"Patient {PATIENT}", exact=True).wait_for(timeout=WAIT_MS)
        _visible_review_forms(tab).first.wait_for(timeout=WAIT_MS)
        _visible_review_forms(tab).first.get_by_role("button", name="Sign", exact=True).click()
        tab.page.get_by_text("Right eye (OD): review version 2 signed.").wait_for(timeout=WAIT_MS)
    assert _right_eye_reviews(strict_app) == [(1, "reviewed", None), (2, "signed", PEOPLE["clinician"]["sub"])]


def test_a_cookie_copied_before_sign_out_is_refused(strict_app: Served, browser, new_tab, tmp_path: Path) -> None:
    tab = new_tab(strict_app, "clinician-out")
    with tab.step("sign in as a clinician"):
        _sign_in(tab, "clinician")
    copied = tab.page.context.cookies()
    assert any(c["name"].startswith("_streamlit_user") for c in copied)
    with tab.step("sign out"):
        tab.page.locator('[data-testid="stSidebar"]').get_by_role("button", name="Sign out").click()
        tab.page.get_by_role("button", name="End session").click(timeout=WAIT_MS)  # the provider's page
        tab.page.get_by_role("button", name="Sign in").wait_for(timeout=WAIT_MS)
    thief = new_tab(strict_app, "replay")
    thief.page.context.add_cookies(copied)
    with thief.step("open the dashboard with the copied cookie"):
        thief.open()
        thief.page.get_by_text("You signed out in this browser. Sign in again to go on.").wait_for(timeout=WAIT_MS)
        assert thief.page.get_by_role("button", name="Sign in").count() == 1
        assert thief.page.locator('[data-testid="stSidebar"]').get_by_text(PEOPLE["clinician"]["name"]).count() == 0
        assert "DEMO-00" not in thief.page.content()
