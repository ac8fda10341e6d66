"""Fixtures shared by every test module: small seeded models (no weights can be downloaded) and real photographs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import CSDI, make_images, seeded_model

# Two threads: the machine has two cores, and tests that run threads of their own stay predictable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def classifier():
    from models import Classifier

    return Classifier(model=seeded_model(0), class_names=("Cataract", "Normal"))


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return make_images()


@pytest.fixture(scope="session")
def csdi_jpeg() -> Path:
    return CSDI / "DLY-OD.jpg"


@pytest.fixture(scope="session")
def mlp_checkpoint(tmp_path_factory) -> Path:
    """The prototype's checkpoint form: a dict with model_state_dict, epoch and val_loss, MLP head."""
    from models.classifier import default_head

    head = default_head(2, hidden=256, activation="relu")
    model = seeded_model(3, head)
    path = tmp_path_factory.mktemp("ckpt") / "best_model.pth"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 16, "val_loss": 4e-5}, path)
    return path


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API: moto's threaded server on 127.0.0.1 at a free port, with test credentials, stopped at the end."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    # Worker processes started later inherit these; moto accepts any credentials.
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """A trained checkpoint (the demo model's weights) at a path of its own.

    Not a seeded random model: their logits run to the hundreds, where float32 rounding that
    changes with the thread count moves probabilities by 1e-3, far beyond the 1e-5 asked of a
    cluster run; a trained model's move by about 2e-7.
    """
    import shutil

    from models import DEMO_MODEL_PATH

    path = tmp_path_factory.mktemp("model") / "screening model.pt"
    shutil.copyfile(DEMO_MODEL_PATH, path)
    # With its card beside it, as a checkpoint travels: the card carries the typicality statistics.
    shutil.copyfile(DEMO_MODEL_PATH.with_suffix(".json"), path.with_suffix(".json"))
    return path


@pytest.fixture(scope="session")
def dask_client(s3_endpoint):
    """A real local Dask cluster of two worker processes on 127.0.0.1, started after the S3 credentials are set."""
    from components.cluster.batch import connect

    with connect("local:2") as client:
        yield client


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session; each test that asks for it gets a database of its own."""
    from tests.support import PostgresServer

    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()
