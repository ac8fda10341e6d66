"""Formula-like CSV cells: written as text a spreadsheet will not run, read back as they were."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from components.base.tables import csv_bytes, neutralise, read_csv, restore
from components.explanation.cam import Explanation
from components.workflows.audit import AuditRow, write_csv
from components.workflows.batch import BatchItem, write_summary
from models.training.data import _read_groups

HOSTILE = ['=HYPERLINK("http://127.0.0.1:9/x?"&A1,"open")', "=1+1", "@SUM(A1:A9)", "+1+1", "-1+1",
           "\tTAB", "\rCR", "'=already quoted", "'plain quote", "''two quotes"]


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=1+1", "'=1+1"), ("@SUM(A1)", "'@SUM(A1)"), ("+1", "'+1"), ("-x", "'-x"), ("\tA", "'\tA"),
     ("\rA", "'\rA"), ("'=1", "''=1"), ("'a", "''a"), ("eye=OD", "eye=OD"), ("-0.25", "-0.25"),
     ("-1e-3", "-1e-3"), ("-", "'-"), ("", ""), (None, ""), (0.5, "0.5"), (-2, "-2"), ("a@b", "a@b")])
def test_neutralise_by_hand(cell, written):
    assert neutralise(cell) == written


@pytest.mark.parametrize("cell", [*HOSTILE, "plain", "-0.5", "", "'"])
def test_restore_undoes_neutralise(cell):
    assert restore(neutralise(cell)) == cell


def test_a_hand_written_quote_is_not_taken_away():
    assert restore("'abc") == "'abc"
    assert restore("'") == "'"


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError):
        neutralise(b"=1")
    with pytest.raises(TypeError):
        restore(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not among its fields"):
        csv_bytes(["a"], [{"a": 1, "b": 2}])


def _explanation() -> Explanation:
    return Explanation(prediction="Cataract", confidence=0.75, probabilities={"Cataract": 0.75, "Normal": 0.25},
                       target="Cataract", cam=np.zeros((7, 7), np.float32), method="gradcam", layer="features.8",
                       cam_lowres=np.zeros((7, 7), np.float32), logits=(1.0, 0.0), raw_max=0.0, is_zero=True)


def test_summary_csv_holds_no_live_formula_and_reads_back_the_original_names(tmp_path):
    items = [BatchItem(file=name, explanation=_explanation()) for name in HOSTILE[:7]]
    items.append(BatchItem(file="@bad.png", error="=not an image"))
    path = tmp_path / "summary.csv"
    write_summary(items, ("Cataract", "Normal"), path)
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    assert lines[1].startswith("\"'=HYPERLINK(")
    assert lines[2].startswith("'=1+1,Cataract,0.750000,0.750000,0.250000,")
    assert "'@SUM(A1:A9)" in lines[3]
    # No cell of any row starts a formula.
    for row in csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")):
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
    header, rows = read_csv(path)
    assert header[:3] == ["file", "prediction", "confidence"]
    assert [r["file"] for r in rows] == [*HOSTILE[:7], "@bad.png"]
    assert rows[-1]["error"] == "=not an image"
    assert rows[0]["confidence"] == "0.750000"


def test_audit_csv_holds_no_live_formula_and_reads_back_the_original_names(tmp_path):
    rows = [AuditRow(file=name, label="=cmd|' /C calc'!A0", prediction="Normal", confidence=0.6,
                     figures={"energy_in_lens": -0.125}) for name in HOSTILE]
    path = tmp_path / "audit.csv"
    write_csv(rows, path)
    text = path.read_text(encoding="utf-8")
    assert "'=cmd|' /C calc'!A0" in text
    assert ",-0.125," in text  # a negative number stays a number
    _, back = read_csv(path)
    assert [r["file"] for r in back] == HOSTILE
    assert {r["label"] for r in back} == {"=cmd|' /C calc'!A0"}
    assert back[0]["energy_in_lens"] == "-0.125"


def test_labels_csv_groups_read_back_through_the_same_reader(tmp_path):
    from components.base.tables import write_csv as write_table

    write_table(tmp_path / "labels.csv", ["file", "group"], [{"file": "cataract/=1+1.png", "group": "@p1"}])
    assert "'=1+1" not in (tmp_path / "labels.csv").read_text(encoding="utf-8")  # inside the cell, not its start
    assert _read_groups(tmp_path) == {"cataract/=1+1.png": "@p1"}
    assert (tmp_path / "labels.csv").read_bytes().split(b"\r\n")[1] == b"cataract/=1+1.png,'@p1"
