"""Fixtures for the record store tests: a private data folder, an open store, seeded photographs, analyses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from components.base import config
from components.records import RecordStore
from tests.support import PostgresServer, free_port


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder not yet created; the database URL comes from no environment."""
    monkeypatch.delenv(config.DB_URL.name, raising=False)
    return tmp_path / "data"


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """An S3 API (moto) on 127.0.0.1 with one empty bucket; the environment that points the store at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        env = {
            "AWS_ACCESS_KEY_ID": "test-key",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "CATARACT_CAM_IMAGE_STORE": "s3",
            "CATARACT_CAM_S3_BUCKET": "clinic-images",
            "CATARACT_CAM_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=env["CATARACT_CAM_S3_ENDPOINT"]).create_bucket(Bucket="clinic-images")
        yield env
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, folder: Path) -> str:
    """The database every store test runs against: SQLite in the data folder, then an empty PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite:///{folder / 'records.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def store(folder: Path, db_url: str) -> Iterator[RecordStore]:
    records = RecordStore(db_url, data_dir=folder)
    yield records
    records.close()


@pytest.fixture
def make_pixels() -> Callable[..., np.ndarray]:
    """Seeded RGB uint8 noise: the same seed gives the same photograph."""

    def make(seed: int, height: int = 24, width: int = 32) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)

    return make


@pytest.fixture
def model_sha() -> str:
    return hashlib.sha256(b"demo model weights").hexdigest()


@pytest.fixture
def analysis_kwargs(model_sha: str) -> Callable[..., dict[str, object]]:
    """The keyword arguments of a valid ``add_analysis`` with this map, ``overrides`` replacing any."""

    def make(cam: np.ndarray, /, **overrides: object) -> dict[str, object]:
        values: dict[str, object] = {
            "model_sha256": model_sha,
            "model_name": "demo-efficientnet-b0",
            "method": "gradcam",
            "layer": "features.8",
            "target": "Cataract",
            "prediction": "Cataract",
            "confidence": 0.875,
            "probabilities": {"Cataract": 0.875, "Normal": 0.125},
            "cam": cam,
        }
        values.update(overrides)
        return values

    return make
