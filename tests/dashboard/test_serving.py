"""The real server's safe defaults: foreign Host names refused, XSRF on, limits in force, no unsigned serving abroad."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.support import dashboard_server, free_port, stop, wait_healthy
from tests.support import ROOT

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with dashboard_server(tmp_path_factory.mktemp("serving")) as running:
        yield running


def _websocket_status(url: str, host: str) -> str:
    """The status line the server answers a WebSocket handshake with, sent with this Host header."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: streamlit\r\n\r\n").encode())
        return connection.recv(256).split(b"\r\n", 1)[0].decode()


def test_a_websocket_with_a_foreign_host_is_refused(server) -> None:
    url, _ = server
    port = url.rsplit(":", 1)[1]
    # DNS rebinding: a page on attacker.example whose name now points at this machine.
    assert _websocket_status(url, f"attacker.example:{port}") == "HTTP/1.1 403 Forbidden"
    assert _websocket_status(url, f"127.0.0.1.attacker.example:{port}") == "HTTP/1.1 403 Forbidden"
    assert _websocket_status(url, f"127.0.0.1:{port}") == "HTTP/1.1 101 Switching Protocols"
    assert _websocket_status(url, f"localhost:{port}") == "HTTP/1.1 101 Switching Protocols"


def test_an_upload_without_the_xsrf_token_is_refused(server) -> None:
    url, _ = server
    request = urllib.request.Request(f"{url}/_stcore/upload_file/session/file", data=b"--x--", method="PUT",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_the_privacy_and_security_settings_are_in_force() -> None:
    # The options as `streamlit run` in the checkout resolves them from .streamlit/config.toml.
    script = ("import json; from streamlit import config; config.get_config_options(force_reparse=True); "
              "print(json.dumps({k: config.get_option(k) for k in ('browser.gatherUsageStats', "
              "'server.enableXsrfProtection', 'server.enableCORS', 'server.maxUploadSize', 'server.allowedHosts', "
              "'server.address', 'client.showErrorDetails', 'server.enableAgentApi')}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    options = json.loads(out.stdout.strip().splitlines()[-1])
    assert options == {"browser.gatherUsageStats": False, "server.enableXsrfProtection": True,
                       "server.enableCORS": True, "server.maxUploadSize": 50,
                       "server.allowedHosts": ["localhost", "127.0.0.1", "::1"], "server.address": "127.0.0.1",
                       "client.showErrorDetails": "none", "server.enableAgentApi": False}


def test_on_all_interfaces_without_sign_in_it_refuses_before_listening(tmp_path: Path) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CATARACT_CAM_")}
    environ.update(CATARACT_CAM_DATA=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "dashboard", "--server.headless", "true", "--server.port",
                           str(port), "--server.address", "0.0.0.0"], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("cataract-cam dashboard: This dashboard refuses to serve patient data on 0.0.0.0 "
                                  "without sign-in.")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # it stopped before warming anything
    with pytest.raises(ConnectionRefusedError):  # nothing ever listened on the port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_dashboard_command_applies_the_checkout_settings_from_any_folder(tmp_path: Path) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CATARACT_CAM_")}
    environ.update(CATARACT_CAM_DATA=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    log = (tmp_path / "cli.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "components", "dashboard", "--port", str(port)],
                               cwd=tmp_path, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, tmp_path / "cli.log")
        # config.toml of the checkout is in force: the Host allow-list refuses a foreign name.
        assert _websocket_status(url, f"attacker.example:{port}") == "HTTP/1.1 403 Forbidden"
        assert _websocket_status(url, f"127.0.0.1:{port}") == "HTTP/1.1 101 Switching Protocols"
    finally:
        stop(process)
        log.close()
