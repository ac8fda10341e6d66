"""``cataract-cam check``: is every configured part ready? One line per part; exit 1 when one is not."""

from __future__ import annotations

import argparse
import sys

from components.cli.common import EXIT_OK, Command, UsageError, add_json_option, add_model_option, print_json

EXIT_NOT_READY = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json_option(p, "print one JSON document on stdout: each part, its status and what was found")
    add_model_option(p, "check this checkpoint instead of the configured one")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for each service (default 5)")


def run(args: argparse.Namespace) -> int:
    from components.interop.readiness import check_parts

    if not 0 < args.timeout <= 120:
        raise UsageError(f"--timeout must be between 0 and 120 seconds, got {args.timeout}.")
    found = check_parts(timeout=args.timeout, model=args.model)
    ready = all(part.ok for part in found)
    if args.json:
        print_json({"ready": ready, "parts": [part.as_dict() for part in found]}, indent=2)
    else:
        width = max(len(part.part) for part in found)
        for part in found:
            print(f"{part.status:<4}  {part.part:<{width}}  {part.detail}", file=sys.stdout)
    if not ready:
        failed = ", ".join(part.part for part in found if not part.ok)
        print(f"cataract-cam: error: not ready: {failed}.", file=sys.stderr)
        return EXIT_NOT_READY
    return EXIT_OK


COMMAND = Command("check", "is every configured part ready (database and schema, model, image store, anchor, "
                           "PACS, sign-in provider)? exit 1 when one is not", add_arguments, run)
