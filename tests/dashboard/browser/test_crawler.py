"""The crawler: every page the sidebar offers, as every role, fresh, after a quick look and with a patient open.

It knows no page by name: it follows the navigation the app draws, checks that it leads to every
page file in dashboard/views/, and fails on any exception a page shows or the server logs. A new
page or widget is covered without a new test.
"""

from __future__ import annotations

import pytest

from tests.dashboard.browser.conftest import PEOPLE
from tests.dashboard.browser.support import WAIT_MS, Tab, page_paths
from tests.support import CSDI

pytestmark = pytest.mark.browser

ROLES = ("no sign-in", "clinician", "viewer", "admin", "no role")
PATIENT = "DEMO-001"  # two eyes
NO_ROLE = "Your account has no role in this dashboard"


def _sign_in(tab: Tab, role: str) -> None:
    with tab.step(f"sign in as {role}"):
        tab.open()
        tab.page.get_by_role("button", name="Sign in").click(timeout=WAIT_MS)
        tab.page.get_by_role("button", name=PEOPLE[role]["sub"], exact=True).click(timeout=WAIT_MS)
        tab.page.get_by_text(PEOPLE[role]["name"]).first.wait_for(timeout=WAIT_MS)


def _crawl(tab: Tab, state: str) -> None:
    """Follow every link of the sidebar's navigation, in this session; each page opens under its link's title."""
    links = tab.page.locator('[data-testid="stSidebarNav"] a')
    titles = [text.splitlines()[-1].strip() for text in links.all_inner_texts()]  # after the icon's ligature
    for index, title in enumerate(titles):
        with tab.step(f"{state}: {title}"):
            links.nth(index).click()
            tab.page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=WAIT_MS)
            tab.settle()


@pytest.mark.parametrize("role", ROLES)
def test_every_page_as_every_role(role: str, demo_app, clinic_app, new_tab) -> None:
    served = demo_app if role == "no sign-in" else clinic_app
    tab = new_tab(served, role)
    if role == "no sign-in":
        with tab.step("open the dashboard"):
            tab.open()
    else:
        _sign_in(tab, role)

    if role == "no role":
        # Nothing past the gate: every page's address shows the same refusal, and no patient.
        for path in page_paths().values():
            with tab.step(f"open /{path} with no role"):
                tab.open(path)
                tab.page.get_by_text(NO_ROLE).wait_for(timeout=WAIT_MS)
                assert tab.nav_paths() == []
                assert PATIENT not in tab.page.content()
        return

    with tab.step("the navigation leads to every page file"):
        assert sorted(tab.nav_paths()) == sorted(page_paths().values())
    _crawl(tab, "fresh")

    with tab.step("a quick look at one photograph"):
        tab.go("Review")
        tab.page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(CSDI / "LZ-OS.jpg"))
        tab.wait_panels(3)
    _crawl(tab, "quick look")

    with tab.step(f"open {PATIENT}"):
        tab.go("Review")
        tab.choose("Patient", PATIENT)
        tab.page.get_by_role("heading", name=f"Patient {PATIENT}", exact=True).wait_for(timeout=WAIT_MS)
        tab.wait_panels(6)
    _crawl(tab, "patient open")
