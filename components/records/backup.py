"""Backup and restore of a whole store: every table as JSON lines and every photograph, for SQLite or PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Date, LargeBinary, Table, func, insert, select, update
from sqlalchemy.engine import Connection

from components.base.files import atomic_write_bytes
from components.records.errors import RecordsError
from components.records.migrations import reserve_ids
from components.records.objects import ImageStore
from components.records.schema import SCHEMA_VERSION, AuditHeadRow, AuditRow, Base, PatientRow, UTCDateTime

__all__ = ["BACKUP_FORMAT", "dump_rows", "load_rows", "read_backup", "write_backup"]

BACKUP_FORMAT: Final = "cataract-cam-records-backup"
# The schema version, the chain head and the ID counters are the restoring database's own: the head is
# checked instead, and the counters are moved past every ID the rows and the audit trail name. Sign-in
# sessions are not restored: everyone signs in again.
_SKIPPED: Final = frozenset({"schema_version", "audit_head", "row_ids", "sign_in_sessions"})


def _tables() -> list[Table]:
    return [table for table in Base.metadata.sorted_tables if table.name not in _SKIPPED]


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _decode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(row)
    for column in table.columns:
        value = decoded.get(column.name)
        if value is None:
            continue
        if isinstance(column.type, LargeBinary):
            decoded[column.name] = base64.b64decode(value)
        elif isinstance(column.type, UTCDateTime):
            decoded[column.name] = datetime.fromisoformat(value)
        elif isinstance(column.type, Date):
            decoded[column.name] = date.fromisoformat(value)
    return decoded


def dump_rows(connection: Connection) -> Iterator[str]:
    """The backup's lines: a header, then one JSON object per row, table by table, parents first."""
    head = connection.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).one()
    yield json.dumps({"format": BACKUP_FORMAT, "schema_version": SCHEMA_VERSION, "head_seq": head.seq,
                      "head_hash": head.hash})
    for table in _tables():
        key = list(table.primary_key.columns)
        for row in connection.execute(select(table).order_by(*key)).mappings():
            yield json.dumps({"table": table.name, "row": {k: _encode(v) for k, v in row.items()}}, sort_keys=True)


def load_rows(connection: Connection, lines: Iterator[str]) -> int:
    """Insert a backup's rows into an empty database and set the chain head; return the rows restored.

    Raises:
        RecordsError: not a backup of this schema version, or the database is not empty.
    """
    header = json.loads(next(lines, "{}"))
    if header.get("format") != BACKUP_FORMAT or header.get("schema_version") != SCHEMA_VERSION:
        raise RecordsError(f"not a records backup of schema version {SCHEMA_VERSION}")
    if connection.scalar(select(func.count()).select_from(PatientRow)) or connection.scalar(
        select(func.count()).select_from(AuditRow)
    ):
        raise RecordsError("a backup is restored into an empty database only")
    tables = {table.name: table for table in _tables()}
    restored = 0
    for line in lines:
        item = json.loads(line)
        table = tables[item["table"]]
        connection.execute(insert(table).values(**_decode(table, item["row"])))
        restored += 1
    if header["head_seq"]:
        connection.execute(update(AuditHeadRow).values(seq=header["head_seq"], hash=header["head_hash"]))
    reserve_ids(connection)
    if connection.dialect.name == "postgresql":
        for table in tables.values():
            if "id" in table.columns and table.c.id.autoincrement is not False and table.name != "user_roles":
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table.name}), false)"
                )
    return restored


def write_backup(connection: Connection, images: ImageStore, folder: Path) -> int:
    """Write ``records.jsonl`` and ``images/<sha256>.png`` into ``folder``; return the rows written."""
    lines = list(dump_rows(connection))
    digests = {json.loads(line)["row"]["image_sha256"] for line in lines[1:] if json.loads(line)["table"] == "exams"}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for sha256 in sorted(digests):
        atomic_write_bytes(folder / "images" / f"{sha256}.png", images.read(sha256))
    atomic_write_bytes(folder / "records.jsonl", ("\n".join(lines) + "\n").encode())
    return len(lines) - 1


def read_backup(connection: Connection, images: ImageStore, folder: Path) -> int:
    """Put a backup's photographs back, then its rows (in ``connection``'s transaction); return the rows."""
    for png in sorted((folder / "images").glob("*.png")):
        if images.put(png.read_bytes()) != png.stem:
            raise RecordsError("a photograph in the backup does not match its SHA-256 name")
    with (folder / "records.jsonl").open(encoding="utf-8") as lines:
        return load_rows(connection, (line for line in lines if line.strip()))
