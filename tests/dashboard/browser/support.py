"""Plain helpers of the browser suite: a running dashboard with its log, and a person's tab that checks every step.

Fixtures live in ``conftest.py``; this module holds functions, classes and constants only.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from tests.support import ROOT

VIEWS = ROOT / "dashboard" / "views"
WAIT_MS = 60_000
# A step is clean when the page shows no Streamlit exception and the server logged none while it ran.
EXCEPTION = '[data-testid="stException"]'
APP_ERROR_TEXT = "This app has encountered an error"
LOG_ERROR = re.compile(r"Traceback \(most recent call last\)|Uncaught app execution|\bException\b|Error:|\bERROR\b")
PANELS = '[data-testid="stImage"] img'
SETTLED = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def write_auth_secrets(path: Path, *, port: int, provider: str, cookie_secret: str) -> Path:
    """A secrets file whose [auth] signs in at ``provider`` (oidc-provider-mock) for a dashboard on ``port``."""
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{cookie_secret}"\n'
        'client_id = "cataract-cam"\nclient_secret = "test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    return path


def page_paths() -> dict[str, str]:
    """Every page file in dashboard/views/ and the path the browser reaches it by ("" for the default page)."""
    return {p.stem: "" if p.stem == "review" else p.stem for p in sorted(VIEWS.glob("*.py"))}


@dataclass
class Served:
    """A dashboard under `streamlit run`: its address, its process and the log it writes."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    data: Path

    def log_size(self) -> int:
        return self.log.stat().st_size

    def errors_since(self, offset: int) -> list[str]:
        """Lines the server logged after ``offset`` that report an exception or an error."""
        with self.log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if LOG_ERROR.search(line)]


class StepFailed(AssertionError):
    """A journey's step failed: what was being done, why, and where its screenshot is."""


class Tab:
    """One person's browser tab on a running dashboard; every step is checked, and a failing one is photographed."""

    def __init__(self, page: Any, served: Served, shots: Path, who: str) -> None:
        self.page = page
        self.served = served
        self.shots = shots
        self.who = who
        self.steps = 0

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[Any]:
        """Do ``what``; then the page must have settled with no exception shown and none logged by the server."""
        self.steps += 1
        mark = self.served.log_size()
        try:
            yield self.page
            self.settle()
            self.assert_clean(mark)
        except Exception as error:
            shot = self.screenshot(f"{self.steps:02d}-{what}")
            print(f"\nscreenshot of the failed step: {shot}")
            raise StepFailed(f"{self.who}, step {self.steps} ({what}): {error}{self._evidence(mark)}"
                             f"\nscreenshot: {shot}") from error

    def _evidence(self, mark: int) -> str:
        """What the page shows and the server logged, whatever failed first: the likelier cause."""
        lines = self.served.errors_since(mark)
        with contextlib.suppress(Exception):
            lines = [*self.page.locator(EXCEPTION).all_inner_texts(), *lines]
        return "".join(f"\n  {line[:300]}" for line in lines[:8])

    def settle(self, timeout: float = WAIT_MS) -> None:
        """Wait until the script has finished its run (a click starts one a moment later: wait that moment too)."""
        self.page.wait_for_timeout(150)
        self.page.wait_for_selector(SETTLED, timeout=timeout)

    def assert_clean(self, mark: int) -> None:
        shown = self.page.locator(EXCEPTION)
        assert shown.count() == 0, f"the page shows an exception: {shown.first.inner_text()[:400]}"
        assert self.page.get_by_text(APP_ERROR_TEXT).count() == 0, "the page says the app has encountered an error"
        logged = self.served.errors_since(mark)
        assert logged == [], f"the server logged: {logged[:5]}"

    def screenshot(self, name: str) -> Path:
        """The whole page as a person would scroll through it, under the test's own folder."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{self.who}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:80]}.png"
        with contextlib.suppress(Exception):  # a closed or crashed page still fails the test, without a picture
            height = self.page.evaluate(
                "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], body')]"
                ".map(e => e.scrollHeight))")
            size = self.page.viewport_size or {"width": 1440, "height": 1600}
            self.page.set_viewport_size({"width": size["width"], "height": min(max(int(height), 800), 12_000)})
            self.page.screenshot(path=path, full_page=True)
            self.page.set_viewport_size(size)
        return path

    # --- what a person does ---------------------------------------------------------------------

    def open(self, path: str = "") -> None:
        self.page.goto(f"{self.served.url}/{path}")
        self.page.wait_for_selector('[data-testid="stApp"]', timeout=WAIT_MS)
        self.settle()

    def go(self, title: str) -> None:
        """Click the page's link in the sidebar (the session and its state are kept), and wait for its title."""
        self.page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
        self.page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=WAIT_MS)

    def choose(self, label: str, option: str) -> None:
        """Pick ``option`` in the select box labelled ``label``."""
        self.page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def radio(self, label: str, choice: str, within: Any = None) -> None:
        scope = within if within is not None else self.page
        scope.locator('[data-testid="stRadio"]').filter(has_text=label).get_by_text(choice, exact=True).click()

    def nav_paths(self) -> list[str]:
        """The paths the sidebar's navigation links lead to, in order."""
        hrefs = self.page.eval_on_selector_all('[data-testid="stSidebarNav"] a', "links => links.map(a => a.href)")
        return [h.removeprefix(self.served.url).strip("/") for h in hrefs]

    def wait_panels(self, count: int, timeout: float = WAIT_MS) -> None:
        """Wait until ``count`` pictures are on the page, each loaded."""
        self.page.wait_for_function(
            """n => { const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
                      return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
            arg=count, timeout=timeout)

    def panel_sources(self) -> list[str]:
        return self.page.eval_on_selector_all(PANELS, "imgs => imgs.map(i => i.src)")

    def download(self, name: str, *, role: str = "button") -> tuple[str, bytes]:
        """Press the download button ``name``; the file's suggested name and its bytes."""
        with self.page.expect_download(timeout=WAIT_MS) as started:
            self.page.get_by_role(role, name=name, exact=True).click()
        return started.value.suggested_filename, Path(started.value.path()).read_bytes()


def pdf_text(data: bytes) -> list[str]:
    """The text of each page of a PDF, whitespace folded."""
    return [" ".join((page.extract_text() or "").split()) for page in PdfReader(io.BytesIO(data)).pages]


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def wait_until(check: Any, seconds: float = 30, what: str = "the condition") -> None:
    """Poll ``check()`` until it is true (for state outside the browser, such as the record store)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not hold within {seconds:.0f} s"
        time.sleep(0.2)
