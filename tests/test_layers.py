"""The declared layers (pyproject.toml's import-linter contracts) hold, and an import against one fails the check."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("components", "models", "dashboard")
CONTRACTS = len(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"])


def _copy_of_the_tree(folder: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def _lint(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(folder), "PATH": str(Path(sys.executable).parent)},
                          check=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return _copy_of_the_tree(tmp_path_factory.mktemp("layers"))


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # The base reaching up to the record store: a layer importing from above it.
    ("components/base/files.py", "from components.records import RecordStore", "Layers: front ends"),
    # Two siblings of one layer that must not know each other.
    ("components/records/store.py", "import components.report", "Layers: front ends"),
    # The engine drawing on screen.
    ("components/explanation/overlay.py", "import streamlit", "Only the dashboard imports Streamlit"),
    # One subcommand borrowing from another (cli/audit.py and cli/cluster.py once imported each other).
    ("components/cli/commands/compare.py", "from components.cli.commands import audit", "No subcommand imports"),
    ("components/explanation/cam.py", "import torchvision", "Nothing the dashboard, the CLI or the engine"),
    # The person's session reaching up to a widget that draws.
    ("dashboard/session.py", "import dashboard.widgets.eye", "The dashboard: the app"),
])
def test_an_import_against_a_contract_fails_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # against the contract\n")
    result = _lint(tree)
    assert result.returncode == 1
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
    assert f"Contracts: {CONTRACTS - 1} kept, 1 broken." in result.stdout
