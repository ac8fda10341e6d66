"""``cataract-cam export --fhir``: a stored patient's signed case as a FHIR Bundle equal to the records."""

from __future__ import annotations

from components.explanation.cam import explain
from components.interop.fhir import bundle_values
from components.records import RecordStore
from models import load_classifier
from tests.interop_support import free_port
from tests.support import who


def test_export_fhir_from_the_records(tmp_path, run_cli, monkeypatch, mlp_checkpoint, images):
    data = tmp_path / "data"
    monkeypatch.setenv("CATARACT_CAM_DATA", str(data))
    monkeypatch.delenv("CATARACT_CAM_DB_URL", raising=False)
    store = RecordStore(data_dir=data)
    try:
        store.create_patient("P-0100")
        exam = store.add_exam("P-0100", eye="OS", pixels=images[4], exam_date="2026-11-20")
        draft = store.save_review(exam.id, author=who("Dr Q"), agrees=True, finding="normal", grade="none")
    finally:
        store.close()
    out = tmp_path / "bundle.json"
    args = ["export", "--patient-id", "P-0100", "--fhir", out, "--model", mlp_checkpoint, "--actor", "Dr Q"]
    code, _out, err = run_cli(args)
    assert code == 2
    assert err == "cataract-cam: error: Sign every eye's review before sending the results.\n"
    assert not out.exists()

    store = RecordStore(data_dir=data)
    try:
        store.sign_review(draft.id, signer=who("Dr Q"))
    finally:
        store.close()
    code, _out, err = run_cli(args)
    assert code == 0, err
    (ex,) = explain(load_classifier(mlp_checkpoint), [images[4]])
    values = bundle_values(out.read_text())
    assert set(values) == {"OS"}
    assert values["OS"]["p"] == ex.probabilities["Cataract"]
    assert values["OS"]["agrees"] is True
    assert values["OS"]["clinician_finding"] == "normal"
    store = RecordStore(data_dir=data)
    try:
        (event,) = [e for e in store.audit_trail("P-0100") if e.object_type == "fhir_bundle"]
        assert (event.action, event.actor, event.details["eyes"]) == ("exported", "Dr Q", ["OS"])
    finally:
        store.close()

    # An endpoint that is down: one line, exit 1, and the file is there all the same.
    out.unlink()
    code, _out, err = run_cli([*args, "--post", f"http://127.0.0.1:{free_port()}"])
    assert code == 1
    assert err.splitlines()[-1] == ("cataract-cam: error: The FHIR endpoint could not be reached after 0 of 5 "
                                    "resources; sending again is safe.")
    assert out.exists()
    code, _out, err = run_cli(["export", "--patient-id", "NOBODY", "--fhir", out, "--model", mlp_checkpoint])
    assert code == 2
