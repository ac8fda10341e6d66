"""``cataract-cam dashboard``: start the Streamlit app, on the given model if any."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from components.base import config
from components.cli.common import Command, UsageError, add_model_option

ROOT = Path(__file__).resolve().parents[3]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8501)
    add_model_option(p, "checkpoint the app starts on")


def run(args: argparse.Namespace) -> int:
    changes = {}
    if args.model:
        model = Path(args.model).expanduser()
        if not model.is_file():
            raise UsageError("--model names no checkpoint file; expected a .pt or .pth file.")
        changes[config.MODEL] = str(model.resolve())  # the app's start-up model
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535, got {args.port}.")
    data = config.path(config.DATA)
    if data is not None:  # the server runs from the checkout: a relative folder would move with it
        changes[config.DATA] = str(data.resolve())
    env = config.child_environment(changes)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    # `python -m dashboard` warms the app (modules, model, demo patients) and then serves it as
    # `streamlit run` would, from the checkout so that its .streamlit/ (127.0.0.1, allowed hosts, no
    # telemetry, sign-in) applies wherever the command is typed.
    command = [sys.executable, "-m", "dashboard", "--server.port", str(args.port)]
    os.chdir(ROOT)
    if os.name == "posix":
        # This process becomes the server: a signal to its PID (Ctrl-C, a service manager) reaches
        # Streamlit itself, and no server is left behind when the command is stopped.
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


COMMAND = Command("dashboard", "start the Streamlit dashboard", add_arguments, run)
