"""One configuration: every setting is read in components.base.config, `cataract-cam config` shows them masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.base import config
from tests.support import ROOT

SECRET_VALUES = ("pw-in-the-url", "dicomweb-password", "token-xyz", "cookie-secret-abc", "client-secret-def")


def test_nothing_else_reads_the_environment_or_the_secrets() -> None:
    found = subprocess.run(["git", "grep", "-n", r"os\.environ\|os\.getenv\|st\.secrets", "--", "components",
                            "models", "dashboard", "gradcam_visualization.py", "test_gradcam.py"],
                           cwd=ROOT, capture_output=True, text=True, check=False).stdout.splitlines()
    assert [line for line in found if not line.startswith("components/base/config.py:")] == []


def test_config_command_shows_every_setting_and_its_source_and_masks_every_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(
        'CATARACT_CAM_DICOMWEB_USER = "pacs-user"\n'
        "[auth]\n"
        'redirect_uri = "https://cataract.clinic.example/oauth2callback"\n'
        'cookie_secret = "cookie-secret-abc"\nclient_id = "cataract-cam"\nclient_secret = "client-secret-def"\n'
        'server_metadata_url = "https://id.clinic.example/.well-known/openid-configuration"\n'
        "[access.roles]\nclinician = [\"dr-ada\"]\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CATARACT_CAM_", "AWS_ENDPOINT"))}
    environ.update(HOME=str(home), PYTHONPATH=str(ROOT),
                   CATARACT_CAM_DB_URL="postgresql+psycopg://app:pw-in-the-url@db.example:5432/records",
                   CATARACT_CAM_DICOMWEB_URL="https://pacs.example/dicom-web",
                   CATARACT_CAM_DICOMWEB_PASSWORD="dicomweb-password", CATARACT_CAM_DICOMWEB_TOKEN="token-xyz",
                   CATARACT_CAM_LENS_FINDER="circle")
    done = subprocess.run([sys.executable, "-m", "components", "config", "--json"], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120, check=True)
    for secret in SECRET_VALUES:
        assert secret not in done.stdout
    rows = {row["name"]: (row["value"], row["source"]) for row in json.loads(done.stdout)}
    assert list(rows)[: len(config.SETTINGS)] == [s.name for s in config.SETTINGS]
    assert rows["CATARACT_CAM_DB_URL"] == ("postgresql+psycopg://app:********@db.example:5432/records", "environment")
    assert rows["CATARACT_CAM_DICOMWEB_PASSWORD"] == ("********", "environment")
    assert rows["CATARACT_CAM_DICOMWEB_TOKEN"] == ("********", "environment")
    assert rows["CATARACT_CAM_DICOMWEB_USER"] == ("pacs-user", "secrets")
    assert rows["CATARACT_CAM_LENS_FINDER"] == ("circle", "environment")
    assert rows["CATARACT_CAM_RETENTION_YEARS"] == ("(10)", "default")
    assert rows["[auth] cookie_secret"] == ("********", "secrets")
    assert rows["[auth] client_secret"] == ("********", "secrets")
    assert rows["[auth] client_id"] == ("cataract-cam", "secrets")
    assert rows["[access] roles"] == ("clinician = [dr-ada]", "secrets")
    assert rows["[access] role_claim"] == ("(not set)", "default")
    # The plain listing masks them too.
    plain = subprocess.run([sys.executable, "-m", "components", "config"], cwd=tmp_path, env=environ,
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "CATARACT_CAM_DICOMWEB_TOKEN" in plain
    for secret in SECRET_VALUES:
        assert secret not in plain


def test_values_are_checked_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ALLOW_NO_AUTH.name, "true")  # only 1 turns it on: a deliberate act
    assert config.flag(config.ALLOW_NO_AUTH) is False
    monkeypatch.setenv(config.ALLOW_NO_AUTH.name, "1")
    assert config.flag(config.ALLOW_NO_AUTH) is True
    monkeypatch.setenv(config.RETENTION_YEARS.name, " 7 ")
    assert config.integer(config.RETENTION_YEARS, 1, 100) == 7
    for bad in ("0", "101", "ten", "-3"):
        monkeypatch.setenv(config.RETENTION_YEARS.name, bad)
        with pytest.raises(config.ConfigError, match="CATARACT_CAM_RETENTION_YEARS must be a whole number"):
            config.integer(config.RETENTION_YEARS, 1, 100)
    monkeypatch.delenv(config.LENS_FINDER.name, raising=False)
    assert config.choice(config.LENS_FINDER) == "learned"
    monkeypatch.setenv(config.LENS_FINDER.name, "Circle")
    assert config.choice(config.LENS_FINDER) == "circle"
    monkeypatch.setenv(config.LENS_FINDER.name, "hough")
    with pytest.raises(config.ConfigError, match="expected one of learned, circle"):
        config.choice(config.LENS_FINDER)
    monkeypatch.setenv(config.DATA.name, "~/clinic-data")
    assert config.path(config.DATA) == Path.home() / "clinic-data"
    monkeypatch.setenv(config.DATA.name, "   ")
    assert config.path(config.DATA) is None


def test_the_environment_wins_over_the_secrets_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "secrets", lambda: {"CATARACT_CAM_DICOMWEB_URL": "https://from-secrets/dw",
                                                     "CATARACT_CAM_ORGANIZATION": "ignored: not read from secrets"})
    monkeypatch.delenv(config.DICOMWEB_URL.name, raising=False)
    monkeypatch.delenv(config.ORGANIZATION.name, raising=False)
    assert config.text(config.DICOMWEB_URL) == "https://from-secrets/dw"
    assert config.text(config.ORGANIZATION) is None  # only the settings marked in_secrets are read there
    monkeypatch.setenv(config.DICOMWEB_URL.name, "https://from-env/dw")
    assert config.text(config.DICOMWEB_URL) == "https://from-env/dw"


def test_the_readme_table_is_the_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config.markdown_table() in readme
    for setting in config.SETTINGS:
        assert readme.count(f"| `{setting.name}` |") == 1
