"""Text from checkpoints and files is shown as written: a model or class name holding Markdown or HTML is not markup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard.present import plain
from tests.dashboard.support import metrics, new_app, page, upload_quick
from tests.support import CSDI, seeded_model

NAME = "![beacon](http://127.0.0.1:9/name.png) **bold** <img src=http://127.0.0.1:9/img.png>"
CLASS = "<img src=http://127.0.0.1:9/c.png>"
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~$:])")


def literal(markdown: str) -> str:
    """What Markdown shows for text escaped by ``plain``: every backslash escape is its character again."""
    return _ESCAPED.sub(r"\1", markdown)


def unescaped_markup(markdown: str) -> list[str]:
    """Markup left live: an image, a link, an HTML tag or emphasis not preceded by a backslash."""
    return re.findall(r"(?<!\\)(?:!\[|\]\(|<[a-z]|\*\*)", markdown)


@pytest.fixture
def hostile(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from models import save_checkpoint

    path = tmp_path / "hostile.pt"
    save_checkpoint(path, seeded_model(0), class_names=("Cataract", CLASS), card={"name": NAME})
    monkeypatch.setenv("CATARACT_CAM_MODEL", str(path))
    return path


@pytest.mark.parametrize("text", [NAME, CLASS, "a_b*c`d`", "x\\y", ":red[no colour]"])
def test_plain_text_reads_back_exactly_and_has_no_live_markup(text: str) -> None:
    assert literal(plain(text)) == text
    assert unescaped_markup(plain(text)) == []


def test_sidebar_and_model_page_show_a_hostile_name_as_written(hostile: Path) -> None:
    at = new_app()
    (caption,) = [c.value for c in at.sidebar.caption if c.value.startswith("Model:")]
    assert unescaped_markup(caption) == []
    assert literal(caption).startswith(f"Model: {NAME} · weights ")
    at = page("model")
    (heading,) = [h.value for h in at.subheader if "beacon" in h.value]
    assert heading == plain(NAME)
    assert literal(heading) == NAME


def test_metric_labels_show_a_hostile_class_name_as_written(hostile: Path) -> None:
    at = upload_quick(new_app(), "LZ-OD.jpg", (CSDI / "LZ-OD.jpg").read_bytes())
    labels = [label for label in metrics(at) if label.startswith("P(")]
    assert labels == ["P(Cataract)", f"P({plain(CLASS)})"]
    assert literal(labels[1]) == f"P({CLASS})"
    assert all(unescaped_markup(c.value) == [] for c in at.caption)
