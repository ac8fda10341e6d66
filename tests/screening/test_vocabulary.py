"""One vocabulary, one decision: each word and rule is defined in one module and imported everywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.screening import decision as screening
from components.screening import vocabulary
from tests.support import ROOT

PRODUCT = [ROOT / "gradcam_visualization.py", ROOT / "test_gradcam.py",
           *sorted(p for d in ("components", "models", "dashboard") for p in (ROOT / d).rglob("*.py"))]


def _assigned_names(path: Path) -> dict[str, int]:
    """Module-level names a file assigns (not imports), with their line."""
    names: dict[str, int] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names[target.id] = node.lineno
    return names


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize("name", sorted(vocabulary.__all__))
def test_each_vocabulary_item_is_defined_in_the_vocabulary_only(name: str) -> None:
    where = [f"{p.relative_to(ROOT)}:{line}" for p in PRODUCT if p.name != "vocabulary.py"
             for n, line in _assigned_names(p).items() if n == name]
    assert where == []


@pytest.mark.parametrize("name", ["REFER", "ROUTINE", "FINAL_DECISION", "DEFAULT_BAND", "decide", "next_step"])
def test_the_decision_and_its_words_are_defined_in_screening_only(name: str) -> None:
    assert hasattr(screening, name)
    where = [f"{p.relative_to(ROOT)}:{line}" for p in PRODUCT if p.name != "decision.py"
             for n, line in _assigned_names(p).items() if n == name]
    assert where == []


@pytest.mark.parametrize("text", [vocabulary.DEMO_WARNING, screening.REFER, screening.ROUTINE,
                                  vocabulary.MODALITY_LABELS["fundus"], vocabulary.EYE_LABELS["OD"],
                                  *vocabulary.VERDICT_LABELS["fundus"].values()])
def test_no_module_spells_out_a_shared_text_again(text: str) -> None:
    home = {"vocabulary.py", "decision.py"}
    copies = [str(p.relative_to(ROOT)) for p in PRODUCT if p.name not in home and text in _string_constants(p)]
    assert copies == []


def test_no_module_applies_the_threshold_itself() -> None:
    # The rule "p >= threshold" is the decision's: a probability ordered against a threshold anywhere
    # else is a second copy of it. Calibration and evaluation choose and measure thresholds instead.
    order = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)
    offenders = []
    for path in PRODUCT:
        if path.name in ("decision.py", "calibration.py", "evaluate.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare) or not any(isinstance(op, order) for op in node.ops):
                continue
            sides = [ast.unparse(x).lower() for x in (node.left, *node.comparators)]
            if any("threshold" in x for x in sides) and any(x == "p" or "prob" in x or x.startswith("p_")
                                                             for x in sides):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_attention_modalities_follow_the_record_modalities() -> None:
    assert [vocabulary.attention_modality(m) for m in vocabulary.MODALITIES] == ["external", "external", "fundus"]
    assert set(vocabulary.ATTENTION_MODALITIES) == {vocabulary.attention_modality(m) for m in vocabulary.MODALITIES}
    with pytest.raises(ValueError, match="Unknown modality 'x-ray'"):
        vocabulary.attention_modality("x-ray")
