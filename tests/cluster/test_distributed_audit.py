"""Audits on a real two-worker Dask cluster: the same verdicts and flags as a local audit, from a folder and from
an S3 prefix (moto on 127.0.0.1), with audit.csv and the gallery written as a local audit writes them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from components.cluster import storage
from components.cluster.audit import labelled_sources, run_audit, write_outputs
from components.cluster.storage import S3Settings
from components.workflows import audit

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """40 synthetic eyes with masks, an unreadable file, and a file name with odd characters."""
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("audit") / "data"
    generate_dataset(root, 40, 23)
    (root / "normal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    first = sorted((root / "cataract").glob("*.jpg"))[0]
    (root / "cataract" / "eye #2 ?ü.jpg").write_bytes(first.read_bytes())
    return root


@pytest.fixture(scope="module")
def local_rows(trained_checkpoint, labelled) -> list[audit.AuditRow]:
    from models import load_classifier

    return audit.audit(load_classifier(trained_checkpoint), audit.read_labelled_folder(labelled))


def _assert_same_verdicts(rows: list[audit.AuditRow], reference: list[audit.AuditRow]) -> None:
    assert [r.file for r in rows] == [r.file for r in reference]
    for r, ref in zip(rows, reference, strict=True):
        assert (r.label, r.prediction, r.verdict, r.flags, r.error) == \
               (ref.label, ref.prediction, ref.verdict, ref.flags, ref.error), r.file
        for value, expected in ((r.confidence, ref.confidence), (r.label_probability, ref.label_probability)):
            assert (value is None) == (expected is None)
            if expected is not None:
                assert abs(value - expected) <= 1e-5, r.file
        assert set(r.figures) == set(ref.figures)
        assert (r.panel is None) == (ref.panel is None)  # gallery pictures for the same flagged images


def test_local_reference_has_every_kind(local_rows):
    assert len(local_rows) == 42
    assert [r.file for r in local_rows if r.error] == ["normal/broken.jpg"]
    # Masks found and used for every synthetic eye; the copy under an odd name has none.
    assert sum(r.figures.get("lens_iou") is not None for r in local_rows) == 40


def test_folder_audit_on_cluster_same_verdicts(dask_client, trained_checkpoint, labelled, local_rows, tmp_path):
    seen: list[int] = []
    rows, classifier = run_audit(dask_client, labelled_sources(str(labelled)), model=trained_checkpoint,
                                 torch_threads=1, progress=lambda done, total: seen.append(done))
    _assert_same_verdicts(rows, local_rows)
    assert audit.summary(rows) == audit.summary(local_rows)
    assert seen[-1] == 42
    shown = write_outputs(rows, str(tmp_path), model_name=classifier.name)
    assert shown == len(audit.ranked(local_rows))
    with (tmp_path / "audit.csv").open(encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [(w["file"], w["verdict"], w["flags"]) for w in written] == \
           [(r.file, r.verdict, "; ".join(r.flags)) for r in local_rows]
    assert (tmp_path / "gallery.html").read_text(encoding="utf-8").count("<figure>") == shown


def test_s3_prefix_audit_same_verdicts(dask_client, trained_checkpoint, labelled, local_rows, s3_endpoint):
    settings = S3Settings(s3_endpoint)
    s3 = storage.s3_client(settings)
    s3.create_bucket(Bucket="audits")
    for path in sorted(p for p in labelled.rglob("*") if p.is_file()):
        s3.put_object(Bucket="audits", Key=f"set 1/{path.relative_to(labelled).as_posix()}", Body=path.read_bytes())
    items = labelled_sources("s3://audits/set 1", settings)
    local_items = labelled_sources(str(labelled))
    assert sorted((i.file, i.label, tuple(sorted(i.masks))) for i in items) == \
           sorted((i.file, i.label, tuple(sorted(i.masks))) for i in local_items)
    rows, classifier = run_audit(dask_client, items, model=trained_checkpoint, settings=settings, torch_threads=1)
    by_file = {r.file: r for r in rows}
    _assert_same_verdicts([by_file[r.file] for r in local_rows], local_rows)
    write_outputs(rows, "s3://audits/results", model_name=classifier.name, settings=settings)
    written = storage.read_bytes("s3://audits/results/audit.csv", settings).decode("utf-8").splitlines()
    assert len(written) == 1 + len(local_rows)
    assert storage.read_bytes("s3://audits/results/gallery.html", settings).startswith(b"<!DOCTYPE html>")
    with pytest.raises(audit.AuditError, match="no images in class sub-folders"):
        labelled_sources("s3://audits/nothing here", settings)
