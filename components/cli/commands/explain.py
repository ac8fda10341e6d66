"""``cataract-cam explain``: a three-panel Grad-CAM picture per image."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.cli.common import Command, add_cam_options, add_json_option, add_model_option
from components.cli.outputs import run_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for gradcam_<name>.jpg (default: here)")
    add_cam_options(p)
    add_json_option(p)
    add_model_option(p)


def run(args: argparse.Namespace) -> int:
    return run_files(args, [Path(p) for p in args.images], Path(args.out))


COMMAND = Command("explain", "three-panel Grad-CAM picture per image", add_arguments, run)
