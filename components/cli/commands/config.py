"""``cataract-cam config``: the settings in force and where each came from, secrets masked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.base import config
from components.cli.common import EXIT_OK, Command, add_json_option, add_model_option, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json_option(p, "print the settings as one JSON document on stdout")
    add_model_option(p, "also show this checkpoint as the one the commands would load")


def run(args: argparse.Namespace) -> int:
    rows = config.effective()
    if args.model:  # what a command given --model would load, in place of the setting
        rows.insert(0, config.Effective("--model", str(Path(args.model).expanduser().resolve()), "command line"))
    if args.json:
        print_json([row.as_dict() for row in rows], indent=2)
        return EXIT_OK
    width = max(len(row.name) for row in rows)
    for row in rows:
        print(f"{row.name:<{width}}  {row.value}  [{row.source}]", file=sys.stdout)
    return EXIT_OK


COMMAND = Command("config", "the settings in force and where each came from (secrets masked)", add_arguments, run)
