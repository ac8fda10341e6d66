"""The operator's log: one JSON object per line on stderr, for a clinic's log collector.

What is logged: sign-in and sign-out, every change and view the record store's audit trail
records (opening a patient, saving and signing a review, sending to the PACS, an export), intake,
and every error. Each line names the actor by the issuer and subject of their sign-in (the same
pair the audit trail keeps), never by a patient: no patient name, ID or birth date, no file name,
no photograph. The record a line is about is named by the store's internal row ID, which means
nothing outside the database.

That rule is kept by construction: :func:`event` takes only the fields in :data:`FIELDS`, each a
number, a flag or a short word from this program's own vocabulary (an action, an outcome, an
error's class). An error is logged by its class and where it happened, never by its text: a
message may quote what it was given. Anything else is dropped and said so.

The lines go through the ``cataract_cam.events`` logger; :func:`configure` (called by the command
line and the dashboard at start) writes them to stderr. Python's own warnings and other loggers are
left as they are.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

__all__ = ["FIELDS", "LOGGER_NAME", "JsonLines", "configure", "error", "event"]

LOGGER_NAME: Final = "cataract_cam.events"
_LOGGER: Final = logging.getLogger(LOGGER_NAME)
# Until configure() is called the lines go nowhere: not to the root logger's handlers (a program
# embedding this one keeps its own logs), nor to Python's last-resort printing of errors.
_LOGGER.addHandler(logging.NullHandler())
_LOGGER.propagate = False

FIELDS: Final = frozenset({
    "action", "object_type", "object_id", "type", "outcome", "kind", "count", "where", "role", "source",
    "status", "seconds", "version",
})
"""The only fields a line may carry beyond its time, level, event and actor."""
_WORD: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,80}")
_NUMERIC_FIELDS: Final = frozenset({"count", "seconds", "version"})


class JsonLines(logging.Formatter):
    """A record of the events logger as one JSON object (its ``oplog`` extra), else its level and logger only."""

    def format(self, record: logging.LogRecord) -> str:
        line = getattr(record, "oplog", None)
        if not isinstance(line, Mapping):
            # A record from elsewhere: its level and where it came from, never its text (which may hold data).
            line = {"time": _now(), "level": record.levelname.lower(), "event": "log", "source": record.name}
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), sort_keys=False)


def configure(stream: TextIO | None = None) -> logging.Handler:
    """Write the events logger's lines to ``stream`` (stderr); once per process, the same handler after."""
    for existing in _LOGGER.handlers:
        if getattr(existing, "cataract_cam", False):
            return existing
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonLines())
    setattr(handler, "cataract_cam", True)  # noqa: B010 - marks the one handler this module adds
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)
    _LOGGER.propagate = False
    return handler


class _Stderr(logging.StreamHandler):
    """Whatever ``sys.stderr`` is when a line is written (a test runner or a server may replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def event(name: str, *, issuer: str | None = None, subject: str | None = None, level: int = logging.INFO,
          **fields: Any) -> dict[str, Any]:
    """Log one line: ``name`` (a word such as ``signed``), the actor's issuer and subject, and ``fields``.

    Returns the line as logged. A field not in :data:`FIELDS`, or whose value is not a number, a flag
    or one short word, is left out (and the line says which keys were left out).
    """
    line: dict[str, Any] = {"time": _now(), "level": logging.getLevelName(level).lower(), "event": _word(name)}
    if issuer is not None or subject is not None:
        line["actor_issuer"], line["actor_subject"] = _actor(issuer), _actor(subject)
    dropped = []
    for key, value in fields.items():
        if key in FIELDS and _plain(key, value):
            line[key] = value
        elif value is not None:
            dropped.append(key)
    if dropped:
        line["dropped"] = sorted(dropped)
    _LOGGER.log(level, name, extra={"oplog": line})
    return line


def error(name: str, problem: BaseException, *, issuer: str | None = None, subject: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """Log an error by its class (and ``fields``: where it happened), never by its message."""
    return event(name, issuer=issuer, subject=subject, level=logging.ERROR, kind=type(problem).__name__, **fields)


def _plain(key: str, value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return value is not None
    if key in _NUMERIC_FIELDS or key == "object_id":
        return isinstance(value, int | float) or (key == "object_id" and isinstance(value, str) and value.isdigit())
    return isinstance(value, str) and bool(_WORD.fullmatch(value))


def _word(value: str) -> str:
    return value if _WORD.fullmatch(value) else "event"


def _actor(value: str | None) -> str | None:
    """An issuer URL or a subject, as the sign-in gave it (they name the clinician, not a patient)."""
    if value is None:
        return None
    return "".join(ch for ch in str(value)[:255] if ch.isprintable())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
