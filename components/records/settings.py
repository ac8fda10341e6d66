"""Where the records live: the data folder, the database URL, and the engine that opens it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from components.base import config

__all__ = [
    "IMAGES_FOLDER",
    "WRITE_OPTION",
    "configured_data_dir",
    "data_dir",
    "database_url",
    "ensure_folder",
    "make_engine",
    "private_database_file",
]

IMAGES_FOLDER: Final = "images"
"""The sub-folder of the data folder where the record store keeps its photographs."""
# Execution option that makes a SQLite transaction take the write lock at BEGIN.
WRITE_OPTION: Final = "cataract_cam_write"
_CHECKOUT: Final = Path(__file__).resolve().parents[2]


def configured_data_dir() -> Path:
    """The patient data folder as configured: $CATARACT_CAM_DATA or the checkout's data/."""
    return config.path(config.DATA) or _CHECKOUT / "data"


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` and any missing parents readable by their owner only; return it."""
    # Patient data is readable by its owner only. mkdir(parents=True) would give missing
    # parents the default mode, so each missing level is made here.
    missing = [level for level in (folder, *folder.parents) if not level.is_dir()]
    for level in reversed(missing):
        level.mkdir(mode=0o700, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Return (and create) the patient data folder: $CATARACT_CAM_DATA or the checkout's data/."""
    return ensure_folder(configured_data_dir())


def database_url(url: str | None, folder: Path) -> str:
    """The database to open: ``url``, else $CATARACT_CAM_DB_URL, else SQLite in ``folder``."""
    return url or config.text(config.DB_URL) or f"sqlite:///{folder / 'records.sqlite3'}"


def private_database_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), or narrow an existing one to that.

    SQLite gives its -wal and -shm files the database file's permissions, so they are 0600 too.

    Raises:
        OSError: the file cannot be created (its folder is missing, read-only or full).
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            # A database made by an older version (or by hand) with the default umask.
            with contextlib.suppress(PermissionError):
                os.chmod(path, mode & 0o700)
        return
    os.close(descriptor)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite, with foreign keys, WAL and a write lock taken at BEGIN."""
    parsed = make_url(url)
    # Exceptions then never quote bound values, which may be names or birth dates.
    options: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **options)
    options["connect_args"] = {"check_same_thread": False, "timeout": 30.0}
    if parsed.database in (None, "", ":memory:"):
        # One shared connection, or each thread would see its own empty in-memory database.
        options["poolclass"] = StaticPool
    elif not parsed.database.startswith("file:"):
        private_database_file(Path(parsed.database))
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            # An erased patient's rows are overwritten with zeros, not left in free pages.
            cursor.execute("PRAGMA secure_delete=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock at BEGIN, so a read-then-write never fails half-way
        # because another thread or process wrote in between; readers never wait for it.
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine
