"""The command line's shape: an explicit list of subcommands, --model on each, and no import back from the engine."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from components.cli import COMMANDS, build_parser, main
from tests.support import ROOT

NAMES = ["explain", "batch", "report", "synth", "train", "evaluate", "audit", "compare", "pull", "send", "export",
         "typicality", "dashboard", "records", "config", "check"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_commands_are_listed_explicitly_in_help_order(capsys) -> None:
    assert [c.name for c in COMMANDS] == NAMES
    assert build_parser().prog == "cataract-cam"
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    # Each command's own line (a wrapped help line may hold a longer word such as "checkpoint").
    where = [re.search(rf"^    {name}\b", shown, re.MULTILINE) for name in NAMES]
    assert all(where), [name for name, found in zip(NAMES, where, strict=True) if not found]
    positions = [found.start() for found in where if found]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_takes_model(name, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    assert "--model PATH" in capsys.readouterr().out


def test_models_and_the_engine_never_import_the_command_line() -> None:
    engine = [p for p in (ROOT / "components").rglob("*.py") if "cli" not in p.relative_to(ROOT / "components").parts]
    files = [*engine, *(ROOT / "models").rglob("*.py"), ROOT / "gradcam_visualization.py"]
    assert len(files) > 10
    offenders = [p.relative_to(ROOT).as_posix() for p in files
                 if any(m == "components.cli" or m.startswith("components.cli.") for m in _imports(p))]
    # components/__main__.py is the command line's own entry point.
    assert offenders == ["components/__main__.py"]


def test_only_the_report_subcommand_loads_the_report_package() -> None:
    users = sorted(p.name for p in (ROOT / "components" / "cli").rglob("*.py")
                   if any(m == "components.report" or m.startswith("components.report.") for m in _imports(p)))
    assert users == ["report.py"]
