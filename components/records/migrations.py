"""The schema's upgrade path: a new database is created at the current version, an older one is migrated."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, inspect, select, text, update
from sqlalchemy.engine import Connection

from components.records.chain import audit_hash, review_hash
from components.records.errors import SchemaVersionError
from components.records.identity import UNAUTHENTICATED
from components.records.schema import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    AuditHeadRow,
    AuditRow,
    Base,
    ExamRow,
    JSONText,
    ReviewRow,
    SchemaVersionRow,
    UTCDateTime,
    utc_now,
)

__all__ = ["create_schema", "schema_version"]

_APPEND_ONLY_MESSAGE: Final = "audit entries are append-only"
# PostgreSQL: a trigger refuses UPDATE and DELETE of audit rows to every role, the table's owner too.
_PG_APPEND_ONLY: Final = (
    "CREATE OR REPLACE FUNCTION cataract_cam_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION cataract_cam_audit_append_only()",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION cataract_cam_audit_append_only()",
)
_SQLITE_APPEND_ONLY: Final = (
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END",
)


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def schema_version(connection: Connection) -> int | None:
    """The schema version a database records, or None for an empty database."""
    if not inspect(connection).has_table(SchemaVersionRow.__tablename__):
        return None
    found = list(connection.scalars(select(SchemaVersionRow.version)))
    return max(found) if found else None


def _append_only(connection: Connection) -> None:
    statements = _PG_APPEND_ONLY if connection.dialect.name == "postgresql" else _SQLITE_APPEND_ONLY
    for statement in statements:
        connection.exec_driver_sql(statement)


def _set_version(connection: Connection, version: int) -> None:
    connection.execute(delete(SchemaVersionRow))
    connection.execute(insert(SchemaVersionRow).values(version=version))


def create_schema(connection: Connection) -> None:
    """Create an empty database at the current version, or migrate an older one; refuse a newer one.

    Raises:
        SchemaVersionError: the database was written by a newer program.
    """
    found = schema_version(connection)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the records database has schema version {found}, newer than the "
            f"{SCHEMA_VERSION} this program reads; upgrade the program to open it"
        )
    if found is None:
        Base.metadata.create_all(connection)
        connection.execute(insert(AuditHeadRow).values(id=1, seq=0, hash=GENESIS_HASH))
        _append_only(connection)
        _set_version(connection, SCHEMA_VERSION)
    elif found == 1:
        upgrade_1_to_2(connection)


def _reviews_1_to_2(operations: Operations, connection: Connection) -> None:
    # Version 1 overwrote the author with the signer, so a signed v1 review's one name is its signer.
    operations.execute("ALTER TABLE reviews RENAME COLUMN reviewer TO author")
    for name, size in (("author_issuer", 255), ("author_subject", 255), ("signer", 128),
                       ("signer_issuer", 255), ("signer_subject", 255), ("content_hash", 64)):
        operations.add_column("reviews", Column(name, String(size), nullable=True))
    connection.execute(text("UPDATE reviews SET author_issuer = :issuer, author_subject = author"),
                       {"issuer": UNAUTHENTICATED})
    connection.execute(
        text("UPDATE reviews SET signer = author, signer_issuer = :issuer, signer_subject = author "
             "WHERE status = 'signed'"),
        {"issuer": UNAUTHENTICATED},
    )
    reviews = _table(ReviewRow.__tablename__)
    for row in connection.execute(select(reviews).where(reviews.c.status == "signed")).all():
        connection.execute(update(reviews).where(reviews.c.id == row.id).values(content_hash=review_hash(row)))


def _audit_1_to_2(operations: Operations, connection: Connection) -> list[dict[str, object]]:
    # The table is rebuilt without its foreign key, and every old entry is chained in its order.
    operations.drop_index("ix_audit_events_patient_id", table_name="audit_events")
    operations.rename_table("audit_events", "audit_events_v1")
    old_table = Table(
        "audit_events_v1", MetaData(), Column("id", Integer), Column("time", UTCDateTime()),
        Column("actor", String), Column("action", String), Column("patient_id", Integer),
        Column("object_type", String), Column("object_id", String), Column("details", JSONText()),
    )
    old = connection.execute(select(old_table).order_by(old_table.c.id)).mappings().all()
    _table(AuditRow.__tablename__).create(connection)
    _table(AuditHeadRow.__tablename__).create(connection)
    return [dict(row) for row in old]


def _vouching_entries(connection: Connection, time: datetime) -> list[dict[str, Any]]:
    # Version 1 kept no hashes: from the migration on, the chain vouches for each signed review as it was.
    reviews, exams = _table(ReviewRow.__tablename__), _table(ExamRow.__tablename__)
    signed = connection.execute(
        select(reviews.c.id, reviews.c.exam_id, reviews.c.version, reviews.c.content_hash, exams.c.patient_id)
        .join(exams, reviews.c.exam_id == exams.c.id)
        .where(reviews.c.status == "signed")
        .order_by(reviews.c.id)
    ).all()
    return [
        {"time": time, "actor": "schema migration 1 to 2", "actor_issuer": UNAUTHENTICATED,
         "actor_subject": "schema-migration-2", "action": "signed", "patient_id": row.patient_id,
         "object_type": "review", "object_id": str(row.id),
         "details": {"exam_id": row.exam_id, "version": row.version, "content_hash": row.content_hash,
                     "migrated": True}}
        for row in signed
    ]


def upgrade_1_to_2(connection: Connection) -> None:
    """Version 1 to 2: review authors apart from signers, identities, the audit hash chain, roles."""
    operations = Operations(MigrationContext.configure(connection))
    _reviews_1_to_2(operations, connection)
    old_entries = _audit_1_to_2(operations, connection)
    Base.metadata.create_all(connection)  # the tables version 1 did not have
    entries = [{**entry, "actor_issuer": UNAUTHENTICATED, "actor_subject": entry["actor"]} for entry in old_entries]
    next_id = max((int(str(entry["id"])) for entry in old_entries), default=0) + 1
    entries += [{**entry, "id": next_id + k} for k, entry in enumerate(_vouching_entries(connection, utc_now()))]
    previous = GENESIS_HASH
    for seq, entry in enumerate(entries, start=1):
        values = {**entry, "seq": seq}
        digest = audit_hash(previous, values)
        connection.execute(insert(AuditRow).values(**values, prev_hash=previous, hash=digest))
        previous = digest
    connection.execute(insert(AuditHeadRow).values(id=1, seq=len(entries), hash=previous))
    operations.drop_table("audit_events_v1")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), "
            "(SELECT coalesce(max(id), 1) FROM audit_events))"
        )
    _append_only(connection)
    connection.execute(update(SchemaVersionRow).values(version=2))
