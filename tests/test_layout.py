"""The documents describe the tree as it is: every module is named, every named file exists, nothing points outside."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support import ROOT

PACKAGES = ("components", "models", "dashboard")


def _layout_block(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    return section.split("```", 2)[1]


def _modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for d in PACKAGES for p in (ROOT / d).rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


@pytest.fixture(scope="module")
def architecture() -> str:
    return _layout_block((ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"), "## Layout")


@pytest.mark.parametrize("module", _modules())
def test_architecture_names_every_module(architecture: str, module: str) -> None:
    stem = module.rsplit("/", 1)[-1]
    assert re.search(rf"(?<![\w.]){re.escape(stem)}\b", architecture), f"{module} is not in docs/ARCHITECTURE.md"


def test_every_file_the_architecture_names_exists(architecture: str) -> None:
    named = set(re.findall(r"(?<![\w/])([a-z_]+\.py)\b", architecture))
    existing = {p.name for p in ROOT.rglob("*.py") if ".venv" not in p.parts}
    assert sorted(named - existing) == []


def test_every_folder_the_layouts_name_exists(architecture: str) -> None:
    readme = _layout_block((ROOT / "README.md").read_text(encoding="utf-8"), "## Layout")
    for block in (architecture, readme):
        for folder in set(re.findall(r"(?<![\w./])([a-z_]+)/(?=[\s,)])", block)):
            assert list(ROOT.glob(f"**/{folder}")), f"{folder}/ is named but does not exist"
    for package in (*PACKAGES, "benchmarks", "tests"):
        assert f"{package}/" in readme
    for sub in ("records", "report", "cli", "synthetic", "views", "widgets"):
        assert f"{sub}/" in readme
        assert f"{sub}/" in architecture


def test_nothing_tracked_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "grep", "-nI", "-e", r"\.\./shared", "-e", "/work/", "-e", "/root/",
                              "-e", "/home/", "--", ".", ":!tests/test_layout.py"],
                             cwd=ROOT, capture_output=True, text=True, check=False)
    assert tracked.returncode in (0, 1), tracked.stderr  # 1: no match
    assert tracked.stdout == ""
