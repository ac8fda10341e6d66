"""The chain's anchor outside the database: a database rewritten as a whole, its chain rebuilt so that
``verify`` alone passes, or cut back to an older copy, fails ``verify`` against the anchor (a file or S3
objects under object lock), and signing writes the anchor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from components.base import config
from components.base.errors import StorageError
from components.records import AnchorError, RecordStore, anchor_at
from components.records.anchor import FileAnchor, S3Anchor
from tests.support import who

DR = who("Dr Ada")


def _sign(store: RecordStore, pseudo_id: str, eye: str, pixels: np.ndarray, finding: str = "cataract") -> int:
    if pseudo_id not in {p.pseudo_id for p in store.list_patients()}:
        store.create_patient(pseudo_id, name="Ann Example")
    exam = store.add_exam(pseudo_id, eye=eye, pixels=pixels)
    grade = "mild" if finding == "cataract" else "none"
    draft = store.save_review(exam.id, author=DR, agrees=True, finding=finding, grade=grade)
    return store.sign_review(draft.id, signer=DR).id


def _head(store: RecordStore) -> tuple[int, str]:
    last = store.audit_trail()[-1]
    return last.seq, last.hash


def test_each_signature_writes_the_head_and_a_rewritten_or_cut_back_database_fails(
    tmp_path: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    anchor = FileAnchor(tmp_path / "outside" / "chain.anchor")
    anchor.path.parent.mkdir()
    clinic = RecordStore(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", data_dir=tmp_path / "clinic", anchor=anchor)
    try:
        _sign(clinic, "AN-1", "OD", make_pixels(1))
        first = _head(clinic)
        clinic.backup(tmp_path / "older")  # a copy taken after the first signature
        _sign(clinic, "AN-1", "OS", make_pixels(2))
        second = _head(clinic)
        points = anchor.read()
        assert [(p.seq, p.hash) for p in points] == [first, second]
        assert anchor.path.stat().st_mode & 0o777 == 0o600
        assert clinic.verify(anchor).ok
    finally:
        clinic.close()

    # The whole database rewritten: the same patient and exams, the left eye now "normal", the chain
    # rebuilt by the program itself. Alone it verifies; against the anchor it does not.
    forged = RecordStore(f"sqlite:///{tmp_path / 'forged.sqlite3'}", data_dir=tmp_path / "forged")
    try:
        _sign(forged, "AN-1", "OD", make_pixels(1))
        _sign(forged, "AN-1", "OS", make_pixels(2), finding="normal")
        assert forged.verify().ok
        report = forged.verify(anchor)
        assert not report.ok
        assert report.problem is not None
        assert report.problem.startswith(f"audit entry {first[0]} differs from the anchor written at ")
        assert report.problem.endswith(": the database was rewritten")
    finally:
        forged.close()

    # Cut back to the older copy: every entry it holds is as anchored, but the later signature is gone.
    older = RecordStore(f"sqlite:///{tmp_path / 'older.sqlite3'}", data_dir=tmp_path / "older-data")
    try:
        older.restore(tmp_path / "older")
        assert older.verify().ok
        problem = older.verify(anchor).problem
        assert problem is not None
        assert problem.startswith(f"the chain has no entry {second[0]}, which the anchor written at ")
        assert problem.endswith("the database was cut back or rewritten")
    finally:
        older.close()


def test_an_anchor_that_cannot_be_written_leaves_the_signature_and_says_so(
    tmp_path: Path, make_pixels: Callable[..., np.ndarray]
) -> None:
    blocked = FileAnchor(tmp_path / "no-such-folder" / "chain.anchor")
    store = RecordStore(f"sqlite:///{tmp_path / 'r.sqlite3'}", data_dir=tmp_path / "r", anchor=blocked)
    try:
        with pytest.raises(StorageError, match=r"^The review is signed, but the chain's anchor was not written"):
            _sign(store, "AN-2", "OD", make_pixels(3))
        (exam,) = store.exams("AN-2")
        assert store.latest_review(exam.id).status == "signed"
        with pytest.raises(AnchorError, match="does not exist"):
            store.verify(blocked)
    finally:
        store.close()
    (tmp_path / "junk.anchor").write_text("not json\n")
    with pytest.raises(AnchorError, match="line 1 of the anchor is not an anchor point"):
        FileAnchor(tmp_path / "junk.anchor").read()


def test_an_s3_anchor_is_locked_and_checked(
    s3_bucket: dict[str, str], tmp_path: Path, make_pixels: Callable[..., np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    monkeypatch.setenv("CATARACT_CAM_IMAGE_STORE", "folder")
    client = boto3.client("s3", endpoint_url=s3_bucket["CATARACT_CAM_S3_ENDPOINT"])
    client.create_bucket(Bucket="chain-anchors", ObjectLockEnabledForBucket=True)
    monkeypatch.setenv(config.ANCHOR.name, "s3://chain-anchors/clinic-a")
    monkeypatch.setenv(config.ANCHOR_RETAIN_DAYS.name, "30")
    anchor = anchor_at("s3://chain-anchors/clinic-a")
    assert anchor == S3Anchor("chain-anchors", "clinic-a", 30)
    store = RecordStore(f"sqlite:///{tmp_path / 's.sqlite3'}", data_dir=tmp_path / "s")  # the configured anchor
    try:
        _sign(store, "AN-3", "OD", make_pixels(4))
        seq, digest = _head(store)
        (item,) = client.list_objects_v2(Bucket="chain-anchors", Prefix="clinic-a/")["Contents"]
        assert item["Key"] == f"clinic-a/{seq:012d}-{digest[:16]}.json"
        assert json.loads(client.get_object(Bucket="chain-anchors", Key=item["Key"])["Body"].read())["hash"] == digest
        assert client.head_object(Bucket="chain-anchors", Key=item["Key"])["ObjectLockMode"] == "COMPLIANCE"
        assert store.verify(anchor).ok
        assert store.anchor_head().seq == seq  # on demand: the same head again
    finally:
        store.close()
    forged = RecordStore(f"sqlite:///{tmp_path / 'f.sqlite3'}", data_dir=tmp_path / "f", anchor=FileAnchor(
        tmp_path / "ignored.anchor"))
    try:
        _sign(forged, "AN-3", "OD", make_pixels(4), finding="normal")
        assert forged.verify().ok
        assert "the database was rewritten" in str(forged.verify(anchor).problem)
    finally:
        forged.close()
