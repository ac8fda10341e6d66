"""Photographs in S3-compatible storage: two app processes on one PostgreSQL and one bucket see each other's work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from components.base.s3 import S3Settings
from components.records import Identity, NotFound, RecordsError, RecordStore
from components.records.objects import S3Images
from tests.support import ROOT, PostgresServer

ADMIN = Identity("https://idp.example", "sub-admin", "Ada Admin")
APP = """
import json, sys
import numpy as np
from pathlib import Path
from datetime import UTC, datetime
from components.records import Identity, RecordStore

url, folder, me, eye, seed = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
who = Identity("https://idp.example", me, me, role="clinician", authenticated_at=datetime.now(UTC))
store = RecordStore(url, data_dir=folder, require_sign_in=True)
if not [p for p in store.list_patients() if p.pseudo_id == "SHARED-1"]:
    store.create_patient("SHARED-1", actor=who)
seen = {}
for exam in store.exams("SHARED-1"):
    review = store.latest_review(exam.id)
    pixels = store.get_image(exam.image_sha256)
    seen[exam.eye] = [review.signer_subject, int(pixels.sum())]
pixels = np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)
exam = store.add_exam("SHARED-1", eye=eye, pixels=pixels, actor=who)
store.sign_review(store.save_review(exam.id, author=who, agrees=True, finding="normal", grade="none").id, signer=who)
store.close()
print(json.dumps({"seen": seen, "wrote": [eye, int(pixels.sum())]}))
"""


def test_s3_images_put_read_delete(s3_bucket: dict[str, str]) -> None:
    client = boto3.client("s3", endpoint_url=s3_bucket["CATARACT_CAM_S3_ENDPOINT"])
    images = S3Images("clinic-images", client=client)
    png = b"\x89PNG not really"
    sha = images.put(png)
    assert images.read(sha) == png
    assert images.keys() == [f"images/{sha[:2]}/{sha}.png"]
    client.put_object(Bucket="clinic-images", Key=images.key(sha), Body=b"damaged")
    with pytest.raises(RecordsError, match="does not match its SHA-256"):
        images.read(sha)
    images.delete(sha)
    with pytest.raises(NotFound, match="image bucket is incomplete"):
        images.read(sha)
    assert images.keys() == []


def test_two_app_processes_share_one_database_and_one_bucket(
    s3_bucket: dict[str, str], postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    env = {**os.environ, **s3_bucket, "PYTHONPATH": str(ROOT)}

    def app(name: str, folder: str, me: str, eye: str, seed: int) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-c", APP, url, str(tmp_path / folder), me, eye, str(seed)],
                              capture_output=True, env=env, cwd=ROOT, timeout=120, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return dict(json.loads(done.stdout))

    # Each replica has its own (empty) local data folder: only the database and the bucket are shared.
    first = app("a", "replica-a", "dr-a", "OD", 1)
    second = app("b", "replica-b", "dr-b", "OS", 2)
    assert second["seen"] == {"OD": ["dr-a", first["wrote"][1]]}
    third = app("a", "replica-a", "dr-a", "OD", 3)
    assert third["seen"] == {"OD": ["dr-a", first["wrote"][1]], "OS": ["dr-b", second["wrote"][1]]}
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))
    store = RecordStore(url, data_dir=tmp_path / "check")
    try:
        bucket = S3Images("clinic-images", settings=S3Settings(s3_bucket["CATARACT_CAM_S3_ENDPOINT"]))
        assert len(bucket.keys()) == 3
        assert store.verify().ok
        # Erasure reaches the bucket too.
        store.grant_role(ADMIN, "admin", actor=None)
        assert store.erase_patient("SHARED-1", actor=ADMIN)["images"] == 3
        assert bucket.keys() == []
        assert store.verify().ok
    finally:
        store.close()
