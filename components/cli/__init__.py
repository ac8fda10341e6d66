"""The ``cataract-cam`` command line: one module per subcommand, one clear line on stderr for bad input.

Each subcommand module holds a :class:`~components.cli.common.Command` (its name, help, options
and what it runs); :data:`COMMANDS` lists them all, in the order ``--help`` shows them. Exit
codes: 0 all done, 2 bad input (one line on stderr), 3 some inputs failed and the rest were done.
``--json`` prints one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from components.base.heap import release_large_buffers
from components.cli.commands import (
    audit,
    batch,
    compare,
    config,
    dashboard,
    evaluate,
    explain,
    export,
    pacs,
    records,
    report,
    synth,
    train,
    typicality,
)
from components.cli.common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Command, UsageError, fail

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "Command", "UsageError", "build_parser", "main"]

COMMANDS: tuple[Command, ...] = (
    explain.COMMAND,
    batch.COMMAND,
    report.COMMAND,
    synth.COMMAND,
    train.COMMAND,
    evaluate.COMMAND,
    audit.COMMAND,
    compare.COMMAND,
    pacs.PULL,
    pacs.SEND,
    export.COMMAND,
    typicality.COMMAND,
    dashboard.COMMAND,
    records.COMMAND,
    config.COMMAND,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="cataract-cam",
        description="Cataract screening decision support with Grad-CAM evidence. "
                    "Decision support only, not a diagnosis.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        # argparse %-formats help strings: a literal percent sign must be doubled there.
        p = sub.add_parser(command.name, help=command.help.replace("%", "%%"), description=command.help)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; its exit code (argparse itself exits with 2 on a malformed command line)."""
    args = build_parser().parse_args(argv)
    release_large_buffers()
    try:
        return int(args.handler(args))
    except UsageError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
