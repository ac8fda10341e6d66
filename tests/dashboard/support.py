"""Plain helpers the dashboard tests share: driving the app under AppTest and reading back what it served.

Fixtures live in ``conftest.py``; this module holds functions, classes and constants only.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from components.explanation.cam import explain
from components.imaging.loading import load_rgb
from tests.support import ROOT, stop

APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 120  # seconds per script run: a first model load on two shared cores is slow
CHROMIUM = "/usr/bin/chromium"


class RecordingMediaFileManager(MediaFileManager):
    """The real media file manager, remembered so a test can read what a run served."""

    latest: RecordingMediaFileManager | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        RecordingMediaFileManager.latest = self

    def read(self, url: str) -> bytes:
        return self._storage.get_file(url.rsplit("/", 1)[-1]).content


class ModelCalls:
    """Counts passes through the network's stem: every forward, explain or predict goes through it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self._handle = model.features[0].register_forward_hook(self._hook)

    def _hook(self, *_args) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def page(name: str) -> AppTest:
    """A new session switched to the named page (views/<name>.py)."""
    at = new_app()
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception


def upload_quick(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="quick_upload").upload(name, data, "image/jpeg")
    at.run()
    assert not at.exception, at.exception
    return at


def images(at: AppTest) -> dict[str, str]:
    """Caption -> served URL of each picture on the page (the URL names the picture's content)."""
    return {img.captions[0]: img.value[0] for img in at.get("image")}


def served(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(RecordingMediaFileManager.latest.read(url))).convert("RGB"))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def expected(clf, path: Path):
    pixels = load_rgb(path)
    (ex,) = explain(clf, [pixels])
    return pixels, ex


def pdf_of(at: AppTest) -> bytes:
    """The PDF the page's Export button builds, built as a press of the button would."""
    (button,) = [b for b in at.get("download_button") if "PDF" in b.label]
    manager = RecordingMediaFileManager.latest
    url = manager.execute_deferred(button.proto.deferred_file_id)
    return manager.read(url)


def download(at: AppTest, label: str) -> bytes:
    (button,) = [b for b in at.get("download_button") if b.proto.label == label]
    return RecordingMediaFileManager.latest.read(button.proto.url)


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def dashboard_server(folder: Path, *, address: str = "127.0.0.1", env: dict[str, str] | None = None,
                     args: Sequence[str] = (), port: int | None = None,
                     ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The dashboard as `make run` starts it, on a free port, logging to ``folder/server.log``; stopped by PID."""
    port = port or free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CATARACT_CAM_")}
    environ.update({"CATARACT_CAM_DATA": str(folder / "data"), "PYTHONPATH": str(ROOT)}, **(env or {}))
    log = (folder / "server.log").open("wb")
    # As `make run` starts it: `python -m dashboard` warms the shared resources, then serves.
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--server.headless", "true",
         "--server.port", str(port), "--server.address", address, *args],
        cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, folder / "server.log")
        yield url, process
    finally:
        stop(process)
        log.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 90) -> None:
    """Wait until the Streamlit server at ``url`` answers its health check; fail with its log if it dies or stalls."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            pass
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"the dashboard did not start within {seconds:.0f} s"
        time.sleep(0.3)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright, closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()
