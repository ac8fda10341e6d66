"""In a real browser, a model and a class name holding Markdown or HTML images fetch nothing and read as written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.dashboard.support import dashboard_server
from tests.support import CSDI, seeded_model

pytestmark = pytest.mark.browser


class _Beacon(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Beacon.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args) -> None:  # quiet
        return


@pytest.fixture
def beacon() -> Iterator[str]:
    """A web server on 127.0.0.1 that records every request made to it."""
    _Beacon.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_markdown_beacon_makes_no_request_and_is_shown_literally(beacon: str, browser, tmp_path: Path) -> None:
    from models import save_checkpoint

    name = f"![b]({beacon}/name.png) <img src={beacon}/tag.png>"
    klass = f"<img src={beacon}/class.png>"
    model = tmp_path / "hostile.pt"
    save_checkpoint(model, seeded_model(0), class_names=("Cataract", klass), card={"name": name})
    with dashboard_server(tmp_path, env={"CATARACT_CAM_MODEL": str(model)}) as (url, _):
        page = browser.new_page(viewport={"width": 1440, "height": 2000})
        page.goto(url)
        # The sidebar names the model in full, as written.
        page.get_by_text(f"Model: {name}", exact=False).wait_for(timeout=60_000)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(CSDI / "LZ-OD.jpg"))
        page.get_by_text(f"P({klass})", exact=True).wait_for(timeout=120_000)
        page.goto(f"{url}/model")
        page.get_by_role("heading", name=name).wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        assert _Beacon.hits == []
        # The beacon does record what a browser fetches, so the empty list above means something.
        page.goto(f"{beacon}/control.png")
        assert _Beacon.hits[0] == "/control.png"
        assert set(_Beacon.hits) <= {"/control.png", "/favicon.ico"}  # a browser may ask for the site's icon
