"""Fixtures of the dashboard tests: a test checkpoint, a fresh data folder the app reads, the app's own model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dashboard.support import RecordingMediaFileManager
from tests.support import seeded_model


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    from models import save_checkpoint

    path = tmp_path_factory.mktemp("dashboard_model") / "test_b0.pt"
    save_checkpoint(path, seeded_model(0), class_names=("Cataract", "Normal"),
                    card={"name": "test-b0", "version": "t1",
                          "metrics": {"auc": {"value": 0.5, "ci95": [0.4, 0.6]}}})
    return path


@pytest.fixture
def env(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder and the test checkpoint, as the dashboard reads them from the environment."""
    data = tmp_path / "data"
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(checkpoint))
    monkeypatch.setenv("CATARACT_CAM_DATA", str(data))
    monkeypatch.delenv("CATARACT_CAM_DB_URL", raising=False)
    monkeypatch.setattr("streamlit.testing.v1.app_test.MediaFileManager", RecordingMediaFileManager)
    return data


@pytest.fixture
def clf(env: Path):
    """The very classifier object the app uses (same cache entry, keyed by the weights' SHA-256)."""
    from dashboard import resources

    return resources.load_checkpoint_file(Path(os.environ["CATARACT_CAM_MODEL"]))
