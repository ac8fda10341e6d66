"""Typed as used: no classifier typed Any, no attention result as a bare dict in product code (mypy checks the rest)."""

from __future__ import annotations

import re

from tests.support import ROOT

PRODUCT = [ROOT / "gradcam_visualization.py",
           *sorted(p for d in ("components", "models", "dashboard") for p in (ROOT / d).rglob("*.py"))]
UNTYPED_CLASSIFIER = re.compile(r"\b(classifier|clf)\w*: Any\b")
ATTENTION_AS_DICT = re.compile(r"\battention\w*: (dict|Mapping)\[str, Any\]")
PROBED = re.compile(r"getattr\((classifier|clf)\w*, \"")


def test_no_classifier_is_typed_any_or_probed_with_getattr() -> None:
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in PRODUCT
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if UNTYPED_CLASSIFIER.search(line) or PROBED.search(line)]
    assert found == []


def test_attention_results_travel_as_their_class() -> None:
    # The database column is JSON; everything above it holds an AttentionResult.
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in PRODUCT if p.name != "schema.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if ATTENTION_AS_DICT.search(line)]
    assert found == []
    assert UNTYPED_CLASSIFIER.search("def f(classifier: Any) -> None:")  # the patterns see what they look for
    assert ATTENTION_AS_DICT.search("    attention: dict[str, Any] | None = None")
