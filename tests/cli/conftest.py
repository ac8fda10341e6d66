"""What the command-line tests share: running ``cataract-cam`` in this process and capturing its output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from components.cli import main


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[Sequence[Any]], tuple[int, str, str]]:
    """``run_cli([...])`` runs the command line on the arguments (paths welcome); exit code, stdout, stderr."""

    def run(args: Sequence[Any]) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
