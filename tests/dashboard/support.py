"""Plain helpers the dashboard tests share: driving the app under AppTest and reading back what it served.

Fixtures live in ``conftest.py``; this module holds functions, classes and constants only.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from components.gradcam import explain
from components.imaging import load_rgb
from tests.support import ROOT

APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 120  # seconds per script run: a first model load on two shared cores is slow


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
    (button,) = at.get("download_button")
    assert "PDF" in button.label
    manager = RecordingMediaFileManager.latest
    url = manager.execute_deferred(button.proto.deferred_file_id)
    return manager.read(url)


def download(at: AppTest, label: str) -> bytes:
    (button,) = [b for b in at.get("download_button") if b.proto.label == label]
    return RecordingMediaFileManager.latest.read(button.proto.url)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_dashboard(folder: Path, model: Path, timeout: float = 90.0):
    """`streamlit run` of the app on a free port of 127.0.0.1, on the data folder ``folder/data``; (url, process).

    The caller stops the process with :func:`stop_dashboard` (by its PID) in a ``finally``.
    """
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    env = dict(os.environ, CATARACT_CAM_DATA=str(folder / "data"), CATARACT_CAM_MODEL=str(model))
    env.pop("CATARACT_CAM_DB_URL", None)
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return url, process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_dashboard(process)
            raise RuntimeError("the dashboard did not start: " + (folder / "server.log").read_text()[-2000:])
        time.sleep(0.3)


def stop_dashboard(process) -> None:
    """Stop the server started by :func:`start_dashboard`, by its PID, killing it if it does not stop."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
