"""``cataract-cam pull`` and ``cataract-cam send``, against a real Orthanc."""

from __future__ import annotations

import json

import pytest

from components.interop.dicom_files import write_objects
from components.interop.dicom_objects import build_objects
from tests.interop_support import eye_photograph, free_port, signed_exam, start_orthanc


@pytest.fixture
def orthanc(tmp_path):
    server = start_orthanc(tmp_path / "pacs")
    yield server
    server.stop()


def test_send_then_pull(orthanc, tmp_path, run_cli, monkeypatch):
    photo = eye_photograph("OD", study_uid="1.2.826.0.1.3680043.8.498.9")
    write_objects([photo], tmp_path / "in")
    objects = build_objects(signed_exam(source=photo))
    write_objects(objects.all(), tmp_path / "results")
    (tmp_path / "results" / "junk.dcm").write_bytes(b"nope")

    code, out, err = run_cli(["send", str(tmp_path / "in"), "--dicomweb", orthanc.dicomweb])
    assert code == 0
    assert "sent 1 object(s), 0 already held by the PACS" in err
    code, out, err = run_cli(["send", str(tmp_path / "results"), "--dicomweb", orthanc.dicomweb, "--json"])
    assert code == 3  # junk.dcm failed, the rest went
    doc = json.loads(out)
    assert sorted(doc["studies"][0]["stored"]) == sorted(d.SOPInstanceUID for d in objects.all())
    assert doc["bad_files"] == [{"file": str(tmp_path / "results" / "junk.dcm"),
                                 "error": "Not a DICOM file (no DICM preamble)."}]
    assert orthanc.instance_count() == 5

    monkeypatch.setenv("CATARACT_CAM_DICOMWEB_URL", orthanc.dicomweb)
    code, out, err = run_cli(["pull", "--study", photo.StudyInstanceUID, "--out", str(tmp_path / "pulled"), "--json"])
    assert code == 0
    assert json.loads(out)["files"] == [str(tmp_path / "pulled" / f"OP_{photo.SOPInstanceUID}.dcm")]

    code, out, err = run_cli(["send", str(tmp_path / "in"), "--dimse", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"])
    assert code == 0
    assert orthanc.instance_count() == 5


def test_pacs_down_gives_one_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("CATARACT_CAM_DICOMWEB_URL", raising=False)
    write_objects(build_objects(signed_exam()).all(), tmp_path / "results")
    port = free_port()
    url = f"http://127.0.0.1:{port}/dicom-web"
    code, _out, err = run_cli(["send", str(tmp_path / "results"), "--dicomweb", url])
    assert code == 1
    assert err.splitlines()[0].startswith(f"cataract-cam: The PACS at 127.0.0.1:{port} could not be reached")
    code, _out, err = run_cli(["pull", "--dicomweb", url, "--study", "1.2.3", "--out", str(tmp_path / "p")])
    assert code == 1
    assert err.count("\n") == 1
    assert "could not be reached" in err
    code, _out, err = run_cli(["pull", "--study", "1.2.3", "--out", str(tmp_path / "p")])
    assert code == 2
    assert err == "cataract-cam: error: Give the PACS with --dicomweb URL or CATARACT_CAM_DICOMWEB_URL.\n"
    code, _out, err = run_cli(["send", str(tmp_path / "results"), "--dimse", "nobody"])
    assert code == 2
    assert "AET@HOST:PORT" in err
