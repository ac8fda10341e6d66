"""`cataract-cam check` against real parts started here: PostgreSQL, an S3 API (moto), Orthanc, an OpenID provider.

Against the running set-up every part is ready and the command exits 0; with one part stopped (or
broken) that part, and only that part, is named, and the command exits 1 with one error line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from components.cli import main
from components.interop.readiness import PARTS, check_parts
from components.records import RecordStore
from tests.interop_support import OrthancServer, start_orthanc
from tests.support import PostgresServer, free_port, run_sql, stop

BUCKET, ANCHORS = "clinic-images", "chain-anchors"


def _start_provider(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                    str(port)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2).read()
            return process, issuer
        except OSError:
            assert process.poll() is None, "the identity provider exited"
            assert time.monotonic() < deadline, "the identity provider did not start within 60 s"
            time.sleep(0.2)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer) -> Iterator[dict[str, object]]:
    """Every part configured and running, as a clinic would set it: the environment points at each."""
    import boto3
    from moto.server import ThreadedMotoServer

    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    orthanc = start_orthanc(tmp_path / "orthanc")
    provider, issuer = _start_provider(tmp_path / "idp.log")
    try:
        db_url = postgres.new_database()
        endpoint = f"http://127.0.0.1:{s3_port}"
        env = {
            "AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1",
            "CATARACT_CAM_DATA": str(tmp_path / "data"), "CATARACT_CAM_DB_URL": db_url,
            "CATARACT_CAM_IMAGE_STORE": "s3", "CATARACT_CAM_S3_BUCKET": BUCKET, "CATARACT_CAM_S3_ENDPOINT": endpoint,
            "CATARACT_CAM_ANCHOR": f"s3://{ANCHORS}/clinic", "CATARACT_CAM_DICOMWEB_URL": orthanc.dicomweb,
            "CATARACT_CAM_OIDC_METADATA_URL": f"{issuer}/.well-known/openid-configuration",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("CATARACT_CAM_MODEL", raising=False)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=ANCHORS, ObjectLockEnabledForBucket=True)
        RecordStore(db_url, data_dir=tmp_path / "data").close()  # the schema, as the first start makes it
        yield {"db_url": db_url, "orthanc": orthanc, "provider": provider, "s3": s3, "tmp": tmp_path}
    finally:
        stop(provider)
        orthanc.stop()
        s3.stop()


def _by_part(found: list) -> dict[str, object]:
    return {part.part: part for part in found}


def test_every_part_of_a_running_set_up_is_ready(stack, capsys) -> None:
    found = _by_part(check_parts())
    assert list(found) == list(PARTS)
    for name, part in found.items():
        assert part.ok, (name, part.detail)
        assert part.configured, name
    assert "schema version 3 (current)" in found["database"].detail
    assert "with its model card" in found["model"].detail
    assert found["image store"].detail == f"the S3 bucket {BUCKET} is writable."
    # The probe object is gone again: nothing is left in the clinic's bucket.
    import boto3

    endpoint = f"http://127.0.0.1:{stack['s3'].get_host_and_port()[1]}"
    assert boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert main(["check", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ready"] is True
    assert [p["part"] for p in document["parts"]] == list(PARTS)
    assert main(["check"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * len(PARTS)
    # The database password never appears (the URL has none here; a configured one is masked).


def _only_failure(capsys, part: str) -> str:
    found = _by_part(check_parts(timeout=3))
    failed = [name for name, p in found.items() if not p.ok]
    assert failed == [part]
    assert main(["check", "--timeout", "3"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"cataract-cam: error: not ready: {part}."]
    (line,) = [line for line in captured.out.splitlines() if line.startswith("FAIL")]
    assert part in line
    assert "Traceback" not in captured.out + captured.err
    return found[part].detail


def test_a_stopped_database_is_named(stack, capsys, monkeypatch) -> None:
    server = PostgresServer()
    url = server.new_database()
    RecordStore(url, data_dir=stack["tmp"] / "data").close()
    monkeypatch.setenv("CATARACT_CAM_DB_URL", url.replace("postgres@", "postgres:s3cret@"))
    assert check_parts()[0].ok
    server.stop()
    detail = _only_failure(capsys, "database")
    assert "could not be opened" in detail
    assert "s3cret" not in detail  # the password is masked


def test_an_old_or_missing_schema_is_named(stack, capsys, postgres) -> None:
    run_sql(stack["db_url"], "UPDATE schema_version SET version = 2")
    assert "older than this program's 3; migrate it" in _only_failure(capsys, "database")


def test_an_empty_database_is_named(stack, capsys, postgres, monkeypatch) -> None:
    monkeypatch.setenv("CATARACT_CAM_DB_URL", postgres.new_database())
    assert "holds no records schema" in _only_failure(capsys, "database")


def test_a_stopped_pacs_is_named(stack, capsys) -> None:
    orthanc: OrthancServer = stack["orthanc"]
    orthanc.stop()
    assert "PACS" in _only_failure(capsys, "PACS")


def test_a_stopped_sign_in_provider_is_named(stack, capsys) -> None:
    stop(stack["provider"])
    assert "discovery document" in _only_failure(capsys, "sign-in provider")


def test_a_missing_bucket_is_named(stack, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CATARACT_CAM_S3_BUCKET", "no-such-bucket")
    assert "could not be written" in _only_failure(capsys, "image store")


def test_a_missing_anchor_bucket_is_named(stack, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CATARACT_CAM_ANCHOR", "s3://no-such-anchors/clinic")
    assert "no-such-anchors" in _only_failure(capsys, "anchor")


@pytest.mark.parametrize("case", ["missing", "not a checkpoint", "no card"])
def test_an_unusable_model_is_named(stack, capsys, monkeypatch, case) -> None:
    from tests.support import seeded_model

    path = stack["tmp"] / "model.pt"
    if case == "not a checkpoint":
        path.write_text("not a checkpoint")
    elif case == "no card":
        torch.save({"model_state_dict": seeded_model(0).state_dict()}, path)
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(path))
    detail = _only_failure(capsys, "model")
    expected = {"missing": "is not a file", "not a checkpoint": "cannot be used", "no card": "has no model card"}
    assert expected[case] in detail
