"""The Audit and Compare pages under Streamlit's AppTest: their figures equal the engine's, downloads, refusals."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components.imaging.loading import decode_image
from components.workflows.audit import audit, compare, ranked, read_labelled_folder, summary
from dashboard.folders import OUTSIDE_DATA as OUTSIDE
from dashboard.keys import widget_key
from models import load_classifier, save_checkpoint
from models.synthetic import generate_dataset
from tests.dashboard.support import click, download, metrics, page
from tests.support import seeded_model


def _synthetic(folder: Path, n: int = 6) -> Path:
    generate_dataset(folder, n=n, seed=3, size=(256, 192))
    return folder


def test_audit_page_on_a_data_folder_shows_the_engines_summary_table_and_downloads(env, clf) -> None:
    folder = _synthetic(env / "audits" / "set1")
    items = read_labelled_folder(folder)
    rows = audit(clf, items)
    want = summary(rows)
    assert want["n"] == 6
    assert want["lens_iou_median"] is not None

    at = page("audit")
    at.radio(key="audit_source").set_value("folder").run()
    at.text_input(key="audit_folder").set_value("audits/set1").run()
    assert not at.error
    click(at, "Run audit")

    assert metrics(at) == {
        "Photographs": "6",
        "Attention on the lens": f"{want['on_lens_rate']:.1%}",
        "Suspect labels": str(len(want["suspect_labels"])),
        "Attention off lens": str(len(want["off_lens"])),
        "Lens found vs pupil mask (median IoU)": f"{want['lens_iou_median']:.3f}",
    }
    table = at.dataframe[0].value
    assert list(table["File"]) == [i.file for i in items]
    assert list(table["Label"]) == ["cataract"] * 3 + ["normal"] * 3
    assert list(table["Prediction"]) == [r.prediction for r in rows]
    assert list(table["Confidence"]) == pytest.approx([r.confidence for r in rows], abs=1e-9)
    assert list(table["Flags"]) == ["; ".join(r.flags) for r in rows]

    written = list(csv.DictReader(io.StringIO(download(at, "Download audit.csv").decode())))
    assert [r["file"] for r in written] == [i.file for i in items]
    assert [r["verdict"] for r in written] == [r.verdict for r in rows]
    gallery = download(at, "Download the gallery (HTML)").decode()
    flagged = ranked(rows)
    assert gallery.startswith("<!DOCTYPE html>")
    assert gallery.count("<figure>") == len(flagged)
    # On screen: one panel per flagged photograph (all readable here), most suspect first.
    assert len(at.get("image")) == len(flagged)
    assert [t.value.split("\n")[0] for t in at.text] == [r.file for r in flagged]


def test_audit_page_refuses_a_folder_outside_the_data_folder(env, clf) -> None:
    at = page("audit")
    at.radio(key="audit_source").set_value("folder").run()
    for outside in ("../", "/etc", "."):
        at.text_input(key="audit_folder").set_value(outside).run()
        assert [e.value for e in at.error] == [OUTSIDE]
        assert next(b for b in at.button if b.label == "Run audit").disabled
    at.text_input(key="audit_folder").set_value("not-there").run()
    assert [e.value for e in at.error] == ["There is no such folder inside the data folder."]


def test_audit_page_labels_uploads_by_their_box_and_leaves_no_copies(env, clf, tmp_path) -> None:
    folder = _synthetic(tmp_path / "set", n=4)
    items = read_labelled_folder(folder)  # cataract/ x2, normal/ x2
    rows = audit(clf, items)
    at = page("audit")
    for box, label in ((0, "cataract"), (1, "normal")):
        uploader = at.file_uploader(key=widget_key("audit_upload", label=box))
        for item in items:
            if item.label == label:
                uploader.upload(item.path.name, item.path.read_bytes(), "image/jpeg")
    at.run()
    click(at, "Run audit")
    table = at.dataframe[0].value
    assert list(table["File"]) == [i.path.name for i in items]
    assert list(table["Label"]) == ["Cataract", "Cataract", "Normal", "Normal"]  # the model's class names
    assert list(table["P(label)"]) == pytest.approx([r.label_probability for r in rows], abs=1e-9)
    assert list(table["Flags"]) == ["; ".join(r.flags) for r in rows]
    leftover = [p for p in env.rglob("*") if p.is_file() and not p.name.startswith("records.sqlite3")]
    assert leftover == []


def _compare_uploads(at: AppTest, folder: Path) -> list[Path]:
    photos = [i.path for i in read_labelled_folder(folder)]
    uploader = at.file_uploader(key="compare_images")
    for photo in photos:
        uploader.upload(photo.name, photo.read_bytes(), "image/jpeg")
    at.run()
    return photos


def test_compare_page_same_checkpoint_agrees_everywhere_with_identical_maps(env, clf, checkpoint, tmp_path) -> None:
    folder = _synthetic(tmp_path / "set", n=2)
    at = page("compare")
    choice = at.selectbox(key="compare_b_file")
    choice.select_index(choice.options.index(checkpoint.name)).run()
    _compare_uploads(at, folder)
    click(at, "Compare")
    table = at.dataframe[0].value
    assert list(table["Agree"]) == [True, True]
    assert list(table["Spearman"]) == [1.0, 1.0]
    assert list(table["Top 20% overlap"]) == [1.0, 1.0]
    assert list(table["Model A"]) == list(table["Model B"])
    assert list(table["Attention A"]) == list(table["Attention B"])
    assert metrics(at)["Same prediction"] == "2 of 2"
    assert len(at.get("image")) == 2  # one picture with both overlays per photograph


def test_compare_page_with_another_checkpoint_shows_the_engines_numbers(env, clf, tmp_path) -> None:
    folder = _synthetic(tmp_path / "set", n=2)
    other = tmp_path / "other.pt"
    save_checkpoint(other, seeded_model(1), class_names=("Cataract", "Normal"), card={"name": "other-b0"})
    at = page("compare")
    at.radio(key="compare_b_source").set_value("upload").run()
    at.file_uploader(key="compare_b_upload").upload("other.pt", other.read_bytes(), "application/octet-stream")
    at.run()
    photos = _compare_uploads(at, folder)
    click(at, "Compare")
    # The page compares one photograph at a time (one decoded at once), so the reference does too:
    # a batch of two differs from two batches of one in the sixth decimal.
    clf_b = load_classifier(other)
    want = [compare(clf, clf_b, [decode_image(p.read_bytes()).pixels], files=[p.name], pictures=False)[0].as_dict()
            for p in photos]
    table = at.dataframe[0].value
    assert list(table["File"]) == [w["file"] for w in want]
    for column, key in (("Model A", "prediction_a"), ("Confidence A", "confidence_a"),
                        ("Model B", "prediction_b"), ("Confidence B", "confidence_b"), ("Agree", "agree"),
                        ("Spearman", "spearman"), ("Top 20% overlap", "top20_overlap"),
                        ("Attention A", "verdict_a"), ("Attention B", "verdict_b")):
        assert list(table[column]) == [w[key] for w in want], column
    assert all(w["spearman"] < 0.999 for w in want)  # another model, other maps
    assert "other-b0" in at.text[0].value
