"""The Batch page on a Dask cluster (``CATARACT_CAM_DASK=local:2``): its workers shown, the same table and CSV."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image

from components.workflows.batch import explain_files
from tests.dashboard.support import RecordingMediaFileManager, new_app

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def on_cluster(env, trained_checkpoint, monkeypatch):
    """The app on a trained model and a local two-worker cluster, closed (with its workers) at the end."""
    from dashboard import resources

    monkeypatch.setenv("CATARACT_CAM_MODEL", str(trained_checkpoint))
    monkeypatch.setenv("CATARACT_CAM_DASK", "local:2")
    yield env
    cluster = resources.cluster()
    resources._cluster.clear()  # on_release closes the client and the cluster it started
    assert cluster is not None
    assert cluster.client.status == "closed"


def test_batch_page_runs_on_the_cluster_with_the_same_results(on_cluster, trained_checkpoint, images, tmp_path):
    from models import load_classifier

    files = []
    for i in range(3):
        files.append(tmp_path / f"eye {i}.png")
        Image.fromarray(images[i]).save(files[-1])
    files.append(tmp_path / "broken.jpg")
    files[-1].write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    want = list(explain_files(load_classifier(trained_checkpoint), files))
    at = new_app()
    at.switch_page("views/batch.py").run()
    assert not at.exception, at.exception
    assert [e.label for e in at.expander] == ["Runs on the Dask cluster at local:2: 2 workers"]
    uploader = at.file_uploader(key="batch_uploads")
    for f in files:
        uploader.upload(f.name, f.read_bytes(), "image/png")
    at.run()
    next(b for b in at.button if b.label == "Run batch").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert list(table["File"]) == [f.name for f in files]
    for i, item in enumerate(want[:3]):
        assert table["Prediction"][i] == item.explanation.prediction
        assert table["Confidence"][i] == pytest.approx(item.explanation.confidence, abs=1e-5)
        assert table["Attention"][i]  # the verdict, made on the worker
    assert table["Error"][3] == want[3].error
    assert len(at.get("image")) == 3  # thumbnails made on the workers
    (button,) = at.get("download_button")
    rows = list(csv.DictReader(io.StringIO(RecordingMediaFileManager.latest.read(button.proto.url).decode())))
    assert [r["file"] for r in rows] == [f.name for f in files]
    assert rows[3]["error"] == want[3].error
    # The temporary copies of the uploads are gone from the data folder.
    assert [p for p in on_cluster.rglob("*") if p.is_file() and not p.name.startswith("records.sqlite3")] == []
