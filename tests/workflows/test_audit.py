"""Audit and compare: flags, the summary's exact shape, audit.csv round trip, a safe gallery, overlap by hand."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.lens import attention
from components.workflows import audit
from components.workflows.audit import FLAG_OFF_LENS, FLAG_SUSPECT, FLAG_UNGRADABLE, AuditRow


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Six synthetic eyes with masks, an unreadable file, and a file name that is also HTML."""
    from models.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("audit") / "data"
    generate_dataset(root, 6, 11)
    (root / "normal" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    first = sorted((root / "cataract").glob("*.jpg"))[0]
    (root / "cataract" / "<b>x<i>.jpg").write_bytes(first.read_bytes())
    return root


@pytest.fixture(scope="module")
def rows(classifier, labelled) -> list[AuditRow]:
    return audit.audit(classifier, audit.read_labelled_folder(labelled))


def test_read_labelled_folder(labelled):
    items = audit.read_labelled_folder(labelled)
    assert len(items) == 8
    assert {i.label for i in items} == {"cataract", "normal"}
    by_file = {i.file: i for i in items}
    assert "normal/broken.jpg" in by_file
    assert not by_file["normal/broken.jpg"].masks
    synth = next(i for i in items if i.file.startswith("normal/syn_"))
    assert set(synth.masks) == {"pupil", "iris", "sclera", "skin"}
    with pytest.raises(audit.AuditError, match="does not exist"):
        audit.read_labelled_folder(labelled / "missing")


def test_audit_rows_and_flags(rows, classifier):
    assert len(rows) == 8
    broken = next(r for r in rows if r.file == "normal/broken.jpg")
    assert broken.error
    assert broken.verdict == audit.UNREADABLE
    assert broken.flags == [FLAG_UNGRADABLE]
    for r in rows:
        if r.error:
            continue
        assert r.verdict in attention.VERDICTS
        assert r.label_probability == pytest.approx(r.probabilities[r.label.capitalize()])
        assert (FLAG_SUSPECT in r.flags) == (r.label_probability <= audit.SUSPECT_MAX_LABEL_PROBABILITY)
        assert (FLAG_OFF_LENS in r.flags) == r.verdict.startswith("off lens")
        assert (FLAG_UNGRADABLE in r.flags) == (r.verdict == "lens not found")
        assert (r.panel is not None) == bool(r.flags)
        if not r.file.startswith("cataract/<"):
            assert r.figures["lens_iou"] is not None  # masks were found and used


def test_summary_shape_and_values_by_hand():
    made = [
        AuditRow("a.jpg", "cataract", verdict="on lens", figures={"lens_iou": 0.9}),
        AuditRow("b.jpg", "normal", verdict="on lens", figures={"lens_iou": 0.7}, flags=[FLAG_SUSPECT]),
        AuditRow("c.jpg", "normal", verdict="off lens: image border", figures={"lens_iou": 0.0},
                 flags=[FLAG_OFF_LENS]),
        AuditRow("d.jpg", "normal", verdict=audit.UNREADABLE, flags=[FLAG_UNGRADABLE], error="bad"),
    ]
    assert audit.summary(made) == {
        "n": 4,
        "verdicts": {"on lens": 2, "off lens: image border": 1, "unreadable": 1},
        "on_lens_rate": 0.5,
        "suspect_labels": ["b.jpg"],
        "off_lens": ["c.jpg"],
        "lens_iou_median": 0.7,
        "lens_tested": 0,
        "not_on_lens": [],
        "not_on_lens_rate": None,
    }
    assert audit.summary([AuditRow("e.jpg", "x", verdict="diffuse")])["lens_iou_median"] is None
    ranked = audit.ranked(made)
    assert [r.file for r in ranked] == ["b.jpg", "c.jpg", "d.jpg"]


def test_csv_round_trip(rows, tmp_path):
    path = tmp_path / "audit.csv"
    audit.write_csv(rows, path)
    with path.open(newline="", encoding="utf-8") as handle:
        back = list(csv.DictReader(handle))
    assert [b["file"] for b in back] == [r.file for r in rows]
    for b, r in zip(back, rows, strict=True):
        assert b["verdict"] == (r.verdict or "")
        assert b["flags"] == "; ".join(r.flags)
        if r.confidence is not None:
            assert float(b["confidence"]) == pytest.approx(r.confidence, abs=1e-6)
            assert float(b["energy_in_border"]) == pytest.approx(r.figures["energy_in_border"])


def test_gallery_is_self_contained_escaped_and_ordered(rows, tmp_path):
    hostile = next(r for r in rows if r.file == "cataract/<b>x<i>.jpg")
    hostile.flags.insert(0, FLAG_SUSPECT)  # make sure it is shown
    hostile.label_probability = 0.0
    hostile.panel = hostile.panel if hostile.panel is not None else np.zeros((8, 8, 3), np.uint8)
    path = tmp_path / "gallery.html"
    shown = audit.write_gallery(rows, path, model_name="m <i>1</i>", demo=True)
    text = path.read_text(encoding="utf-8")
    assert shown == sum(1 for r in rows if r.flags)
    assert "<b>x<i>" not in text
    assert "&lt;b&gt;x&lt;i&gt;" in text
    assert "<i>1</i>" not in text
    assert "Demonstration model trained on synthetic images" in text
    # Nothing fetched: no http(s) address, no external script or stylesheet, images inline.
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    assert "http" not in text.replace("http-equiv", "")
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert len(images) == sum(1 for r in rows if r.flags and r.panel is not None)
    first = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert first.format == "JPEG"
    assert first.width > first.height
    # Most suspect first: the hostile file (probability 0 for its label) leads.
    assert text.index("&lt;b&gt;x&lt;i&gt;") < text.index("broken.jpg")


def test_top_overlap_by_hand():
    a = np.array([4.0, 3.0, 2.0, 1.0, 0.0])
    b = a[::-1].copy()
    assert audit.top_overlap(a, a, 0.4) == 1.0
    assert audit.top_overlap(a, b, 0.4) == 0.0  # tops {0, 1} and {4, 3}
    c = np.array([4.0, 0.0, 2.0, 3.0, 1.0])
    assert audit.top_overlap(a, c, 0.4) == 0.5  # tops {0, 1} and {0, 3}
    with pytest.raises(audit.AuditError, match="same number"):
        audit.top_overlap(a, a[:3])


def test_compare_two_models(classifier, images):
    from models import Classifier
    from tests.support import seeded_model

    other = Classifier(model=seeded_model(5), class_names=("Cataract", "Normal"))
    same = audit.compare(classifier, classifier, images[:2], files=["a.png", "b.png"])
    assert [c.agree for c in same] == [True, True]
    assert all(c.spearman == pytest.approx(1.0) and c.top_overlap == 1.0 for c in same)
    assert all(c.verdict_a == c.verdict_b for c in same)
    diff = audit.compare(classifier, other, images[:2], files=["a.png", "b.png"])
    for c in diff:
        assert c.agree == (c.prediction_a == c.prediction_b)
        assert -1.0 <= c.spearman < 1.0
        assert c.picture is not None
        assert c.picture.shape[1] > 3 * 224


def test_audit_command_json(classifier, labelled, tmp_path, capsys):
    from components.cli import main
    from models import save_checkpoint

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, classifier.model, class_names=classifier.class_names)
    out = tmp_path / "out"
    code = main(["audit", str(labelled), "--out", str(out), "--model", str(ckpt), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)  # exactly one JSON document on stdout
    assert list(doc) == ["n", "verdicts", "on_lens_rate", "suspect_labels", "off_lens", "lens_iou_median",
                         "lens_tested", "not_on_lens", "not_on_lens_rate"]
    assert doc["n"] == 8
    assert sum(doc["verdicts"].values()) == 8
    assert (out / "audit.csv").is_file()
    assert (out / "gallery.html").is_file()

    code = main(["compare", str(labelled / "normal" / "broken.jpg"),
                 *[str(p) for p in sorted((labelled / "cataract").glob("syn_*.jpg"))[:1]],
                 "--model", str(ckpt), "--model", str(ckpt), "--out", str(tmp_path / "cmp"), "--json"])
    captured = capsys.readouterr()
    assert code == 3  # one unreadable file
    doc = json.loads(captured.out)
    good = [i for i in doc["images"] if "error" not in i]
    assert doc["agreement"] == 1.0
    assert good[0]["spearman"] == 1.0
    assert Path(good[0]["picture"]).is_file()
    assert main(["compare", str(labelled / "normal" / "broken.jpg"), "--model", str(ckpt)]) == 2
    assert "exactly twice" in capsys.readouterr().err


def test_a_large_audit_streams_into_a_paged_gallery(tmp_path):
    from components.base.tables import read_csv
    from components.workflows.audit import (
        FLAG_OFF_LENS,
        FLAG_SUSPECT,
        AuditOutputs,
        AuditRow,
        gallery_page_name,
        summary,
        write_gallery,
    )

    rows = []
    for i in range(260):
        flags = [FLAG_SUSPECT] if i % 2 == 0 else ([FLAG_OFF_LENS] if i % 3 == 0 else [])
        row = AuditRow(file=f"cataract/eye{i:03d}.png", label="cataract", prediction="Normal", confidence=0.9,
                       label_probability=round(0.001 * (i % 50), 6), verdict="on lens", flags=flags,
                       figures={"energy_in_lens": 0.5})
        if flags:
            row.panel = np.full((12, 30, 3), i % 256, np.uint8)
        rows.append(row)
    expected = summary(rows)
    ranked_files = [r.file for r in sorted((r for r in rows if r.flags),
                                           key=lambda r: (FLAG_SUSPECT not in r.flags, -r.suspicion,
                                                          FLAG_OFF_LENS not in r.flags, r.file))]
    # The same rows held in memory give the same pages, byte for byte: pictures included.
    assert write_gallery(rows, tmp_path / "held" / "gallery.html", model_name="m", page_size=100) == 173
    outputs = AuditOutputs(tmp_path / "out")
    for row in rows:
        outputs.add(row)
        assert row.panel is None  # let go as soon as it is saved
    shown = outputs.finish(model_name="m", page_size=100)
    assert shown == len(ranked_files) == 173
    assert outputs.tally.summary() == expected
    _, written = read_csv(tmp_path / "out" / "audit.csv")
    assert [r["file"] for r in written] == [r.file for r in rows]
    pages = [(tmp_path / "out" / gallery_page_name(p)).read_text() for p in (1, 2)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audit.csv", "gallery-2.html", "gallery.html"]
    order = [f for page in pages for f in re.findall(r"<b>(cataract/eye\d+\.png)</b>", page)]
    assert order == ranked_files
    assert [page.count("<img ") for page in pages] == [100, 73]
    assert 'href="gallery-2.html">next</a>' in pages[0]
    assert 'href="gallery.html">previous</a>' in pages[1]
    assert "page 2 of 2: flagged images 101 to 173" in pages[1]
    assert pages == [(tmp_path / "held" / gallery_page_name(p)).read_text() for p in (1, 2)]
