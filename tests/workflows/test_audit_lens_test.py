"""The audit asks the model, not only the map: each cataract call whose lens was found is tested with a cleared lens."""

from __future__ import annotations

import csv

import pytest

from components.workflows import audit


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory):
    from models import load_classifier
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("lens_tested")
    generate_dataset(root, 16, 4343)  # a data-set seed not used to set the clearing
    demo = load_classifier(None)
    return demo, audit.audit(demo, audit.read_labelled_folder(root), workers=1)


def test_demo_model_cataract_calls_rest_on_the_lens(demo_rows, tmp_path):
    demo, rows = demo_rows
    tested = [r for r in rows if "clear_lens_probability" in r.figures]
    calls = [r for r in rows if r.prediction == "Cataract"]
    # Every cataract call whose lens was found is tested, and nothing else is.
    assert {r.file for r in tested} == {r.file for r in calls if r.verdict != "lens not found"}
    assert len(tested) >= 5
    flagged = [r for r in tested if audit.FLAG_NOT_ON_LENS in r.flags]
    survivors = [r.file for r in tested if r.figures["clear_lens_probability"] >= demo.threshold]
    assert [r.file for r in flagged] == survivors
    assert len(flagged) <= 0.1 * len(tested)
    stats = audit.summary(rows)
    assert stats["lens_tested"] == len(tested)
    assert stats["not_on_lens"] == [r.file for r in flagged]
    assert stats["not_on_lens_rate"] == pytest.approx(len(flagged) / len(tested), abs=1e-4)
    path = tmp_path / "audit.csv"
    audit.write_csv(rows, path)
    with path.open(newline="", encoding="utf-8") as handle:
        read = {row["file"]: row for row in csv.DictReader(handle)}
    for r in tested:
        assert float(read[r.file]["clear_lens_probability"]) == pytest.approx(r.figures["clear_lens_probability"])
