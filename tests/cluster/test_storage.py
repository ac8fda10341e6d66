"""Locations on disk and in S3 (moto's real S3 API on 127.0.0.1): listing, odd keys, reading, writing, errors."""

from __future__ import annotations

import pytest

from components.cluster import storage
from components.cluster.storage import S3Settings, StorageError

pytestmark = pytest.mark.timeout(120)

ODD_KEYS = ["photos/eye #1 ?.jpg", "photos/ünïcødé 100%.png", "photos/sub/a+b&c=d.jpeg", "photos/notes.txt",
            "photos/", "photos2/x.jpg", "top level.JPG"]


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> tuple[str, S3Settings]:
    settings = S3Settings(s3_endpoint)
    client = storage.s3_client(settings)
    client.create_bucket(Bucket="odd-keys")
    for i, key in enumerate(ODD_KEYS):
        client.put_object(Bucket="odd-keys", Key=key, Body=f"content {i}".encode())
    client.create_bucket(Bucket="empty")
    return "odd-keys", settings


def test_split_join_and_names_by_hand():
    assert storage.split_s3("s3://b/photos/eye #1 ?.jpg") == ("b", "photos/eye #1 ?.jpg")
    assert storage.split_s3("s3://b") == ("b", "")
    assert storage.split_s3("s3://b/") == ("b", "")
    assert storage.join("s3://b/out", "summary.csv") == "s3://b/out/summary.csv"
    assert storage.join("s3://b/out/", "summary.csv") == "s3://b/out/summary.csv"
    assert storage.join("s3://b", "summary.csv") == "s3://b/summary.csv"
    assert storage.join("results", "summary.csv") == "results/summary.csv"
    assert storage.source_name("s3://b/photos/eye #1 ?.jpg") == "eye #1 ?.jpg"
    assert storage.source_name("a/b/c.png") == "c.png"
    assert storage.is_s3("s3://b/k")
    assert not storage.is_s3("b/k")
    with pytest.raises(StorageError, match="no bucket"):
        storage.split_s3("s3:///key")
    with pytest.raises(StorageError, match="s3:// URL"):
        storage.split_s3("http://b/key")
    with pytest.raises(TypeError, match="got int"):
        storage.is_s3(3)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="http"):
        S3Settings("127.0.0.1:9000")


def test_listing_prefixes_with_odd_keys(bucket):
    name, settings = bucket
    under_photos = list(storage.list_prefix(f"s3://{name}/photos", settings))
    # "photos" is a folder: photos2/ is not in it, the folder marker "photos/" is skipped.
    assert under_photos == [f"s3://{name}/{k}" for k in sorted(ODD_KEYS) if k.startswith("photos/") and k != "photos/"]
    images = storage.collect_sources([f"s3://{name}/photos/"], settings)
    assert images == [f"s3://{name}/photos/eye #1 ?.jpg", f"s3://{name}/photos/sub/a+b&c=d.jpeg",
                      f"s3://{name}/photos/ünïcødé 100%.png"]
    whole = storage.collect_sources([f"s3://{name}"], settings)
    assert len(whole) == 5
    assert f"s3://{name}/top level.JPG" in whole
    assert f"s3://{name}/photos2/x.jpg" in whole
    # An object named explicitly is taken whatever its suffix, like a file named on the command line.
    assert storage.collect_sources([f"s3://{name}/photos/notes.txt"], settings) == [f"s3://{name}/photos/notes.txt"]
    assert storage.collect_sources(["s3://empty", "s3://empty/nothing/here"], settings) == []


def test_reading_and_writing_both_kinds(bucket, tmp_path):
    name, settings = bucket
    assert storage.read_bytes(f"s3://{name}/photos/ünïcødé 100%.png", settings) == b"content 1"
    assert storage.read_bytes(f"s3://{name}/photos/eye #1 ?.jpg", settings) == b"content 0"
    target = f"s3://{name}/out dir/résumé #2.csv"
    storage.write_bytes(target, b"a,b\n1,2\n", settings)
    assert storage.read_bytes(target, settings) == b"a,b\n1,2\n"
    assert storage.exists(target, settings)
    assert not storage.exists(f"s3://{name}/out dir", settings)
    local = tmp_path / "deep" / "x.bin"
    storage.write_bytes(local, b"\x00\x01", settings)
    assert storage.read_bytes(local) == b"\x00\x01"
    assert storage.exists(str(local))


def test_errors_name_no_key(bucket):
    name, settings = bucket
    secret = "photos/Jane Doe 1960-01-01.jpg"
    with pytest.raises(StorageError, match="does not exist") as info:
        storage.read_bytes(f"s3://{name}/{secret}", settings)
    assert "Jane" not in str(info.value)
    with pytest.raises(StorageError, match="bucket does not exist"):
        list(storage.list_prefix("s3://no-such-bucket/x", settings))
    with pytest.raises(StorageError, match="not an object"):
        storage.write_bytes(f"s3://{name}/prefix/", b"x", settings)
    with pytest.raises(StorageError, match="names a bucket"):
        storage.read_bytes(f"s3://{name}", settings)
    with pytest.raises(TypeError, match="bytes"):
        storage.write_bytes(f"s3://{name}/k", "text", settings)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="does not exist or cannot be read"):
        storage.read_bytes("/nonexistent/Jane Doe.jpg")


def test_endpoint_from_the_aws_environment(bucket, s3_endpoint, monkeypatch):
    name, _ = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    assert storage.read_bytes(f"s3://{name}/photos/eye #1 ?.jpg") == b"content 0"  # no S3Settings given
    assert storage.s3_client().meta.endpoint_url == s3_endpoint
