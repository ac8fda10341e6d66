"""The ``cataract-cam`` command line: one module per subcommand, one clear line on stderr for bad input.

Each subcommand module holds a :class:`~components.cli.common.Command` (its name, help, options
and what it runs); :data:`COMMANDS` lists them all, in the order ``--help`` shows them. Exit
codes: 0 all done, 2 bad input (one line on stderr), 3 some inputs failed and the rest were done.
``--json`` prints one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from components.base import config as settings
from components.base import oplog
from components.base.errors import CataractCamError
from components.base.heap import release_large_buffers
from components.cli.commands import (
    audit,
    batch,
    check,
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
from components.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    Command,
    UsageError,
    fail,
)

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
    check.COMMAND,
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
    """Run one subcommand; its exit code (argparse itself exits with 2 on a malformed command line).

    Whatever goes wrong is one line on stderr, never a traceback: what the user can mend (bad input,
    a file that cannot be read, a service that cannot be reached) exits 2, an interruption 130, a
    reader that closed the pipe (``| head``) quietly 141, and a fault of this program 70 with a
    line asking to report it (``CATARACT_CAM_DEBUG=1`` shows the traceback instead).
    """
    args = build_parser().parse_args(argv)
    release_large_buffers()
    if settings.flag(settings.LOG_JSON):
        oplog.configure()
    try:
        return int(args.handler(args))
    except (UsageError, CataractCamError) as exc:
        if isinstance(exc, CataractCamError):
            oplog.error("command_failed", exc, source=args.command)
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader is gone: say nothing more, and keep the interpreter from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except MemoryError:
        return fail("out of memory; run fewer or smaller photographs at a time.")
    except OSError as exc:
        # Never the path: a file name may carry a patient's name.
        return fail(f"{exc.strerror or 'the operating system refused'}.")
    except Exception as exc:
        oplog.error("command_failed", exc, source=args.command)
        if settings.flag(settings.DEBUG):
            raise
        return fail(f"internal error ({type(exc).__name__}); please report it, with the command that caused it. "
                    f"Run with {settings.DEBUG.name}=1 to see where it happened.", EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
