"""The schema's upgrade path: a new database is created at the current version, an older one is migrated."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    cast,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from components.records.chain import audit_hash, facts_of, review_hash
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
    PatientRow,
    ReviewRow,
    RowIdRow,
    SchemaVersionRow,
    SignInSessionRow,
    UTCDateTime,
    new_seal_key,
    utc_now,
)

__all__ = ["HEAD_REVISION", "REVISIONS", "bring_to_version_3", "migrate", "open_schema", "reserve_ids", "revision",
           "schema_version"]

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


_HEAD_MESSAGE: Final = "the chain head moves only onto the entry appended after it"
_IDS_MESSAGE: Final = "row IDs only go up"
# The head may only move on to the entry just appended after it (or, in a restored database, from the
# empty chain to its last entry); the ID counters only go up. Neither row may be deleted.
_PG_GUARDS: Final = (
    "CREATE OR REPLACE FUNCTION cataract_cam_audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND EXISTS (SELECT 1 FROM audit_events e "
    "WHERE e.seq = NEW.seq AND e.hash = NEW.hash AND ((NEW.seq = OLD.seq + 1 AND e.prev_hash = OLD.hash) "
    f"OR OLD.seq = 0)) THEN RETURN NEW; END IF; RAISE EXCEPTION '{_HEAD_MESSAGE}'; END $$",
    "CREATE TRIGGER audit_head_guard BEFORE UPDATE OR DELETE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION cataract_cam_audit_head_guard()",
    "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION cataract_cam_audit_append_only()",
    "CREATE OR REPLACE FUNCTION cataract_cam_row_ids_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN IF TG_OP = 'UPDATE' AND NEW.name = OLD.name AND NEW.last > OLD.last THEN RETURN NEW; END IF; "
    f"RAISE EXCEPTION '{_IDS_MESSAGE}'; END $$",
    "CREATE TRIGGER row_ids_guard BEFORE UPDATE OR DELETE ON row_ids "
    "FOR EACH ROW EXECUTE FUNCTION cataract_cam_row_ids_guard()",
    "CREATE TRIGGER row_ids_no_truncate BEFORE TRUNCATE ON row_ids "
    "FOR EACH STATEMENT EXECUTE FUNCTION cataract_cam_audit_append_only()",
)
_SQLITE_GUARDS: Final = (
    "CREATE TRIGGER audit_head_guard BEFORE UPDATE ON audit_head WHEN NOT (NEW.id = OLD.id AND EXISTS "
    "(SELECT 1 FROM audit_events e WHERE e.seq = NEW.seq AND e.hash = NEW.hash AND "
    "((NEW.seq = OLD.seq + 1 AND e.prev_hash = OLD.hash) OR OLD.seq = 0))) "
    f"BEGIN SELECT RAISE(ABORT, '{_HEAD_MESSAGE}'); END",
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
    f"BEGIN SELECT RAISE(ABORT, '{_HEAD_MESSAGE}'); END",
    "CREATE TRIGGER row_ids_guard BEFORE UPDATE ON row_ids WHEN NOT (NEW.name = OLD.name AND NEW.last > OLD.last) "
    f"BEGIN SELECT RAISE(ABORT, '{_IDS_MESSAGE}'); END",
    f"CREATE TRIGGER row_ids_no_delete BEFORE DELETE ON row_ids BEGIN SELECT RAISE(ABORT, '{_IDS_MESSAGE}'); END",
)
# Which audit entries name a row of each table, so that no ID they name is handed out again.
_ID_REFERENCES: Final = {"patients": None, "exams": "exam", "analyses": "analysis", "reviews": "review"}


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


def _guards(connection: Connection) -> None:
    statements = _PG_GUARDS if connection.dialect.name == "postgresql" else _SQLITE_GUARDS
    for statement in statements:
        connection.exec_driver_sql(statement)


def reserve_ids(connection: Connection) -> None:
    """Move each table's ID counter past every ID its rows and the audit trail have used (erased ones too)."""
    audit = _table(AuditRow.__tablename__)
    counters = _table(RowIdRow.__tablename__)
    for name, kind in _ID_REFERENCES.items():
        table = _table(name)
        if kind is None:
            referenced = select(func.max(audit.c.patient_id))
        else:
            referenced = select(func.max(cast(audit.c.object_id, Integer))).where(audit.c.object_type == kind)
        highest = max(connection.scalar(select(func.max(table.c.id))) or 0, connection.scalar(referenced) or 0)
        if connection.scalar(select(counters.c.last).where(counters.c.name == name)) is None:
            connection.execute(insert(counters).values(name=name, last=highest))
        else:
            connection.execute(update(counters).where(counters.c.name == name, counters.c.last < highest)
                               .values(last=highest))


def _set_version(connection: Connection, version: int) -> None:
    connection.execute(delete(SchemaVersionRow))
    connection.execute(insert(SchemaVersionRow).values(version=version))


REVISIONS: Final = Path(__file__).resolve().parent / "schema_revisions"
"""The Alembic revisions of the records database (``env.py``, ``versions/``)."""
HEAD_REVISION: Final = "r0004"
"""The revision this program's code reads: schema version 3 with the interop ledger's tables."""


def bring_to_version_3(connection: Connection) -> None:
    """Create an empty database at version 3, or upgrade one made before Alembic (versions 1 and 2).

    Alembic's first revision (``schema_revisions/versions/r0003_records_v3.py``) runs this.

    Raises:
        SchemaVersionError: the database was written by a newer program.
    """
    found = schema_version(connection)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(_newer(found))
    if found is None:
        Base.metadata.create_all(connection)
        connection.execute(insert(AuditHeadRow).values(id=1, seq=0, hash=GENESIS_HASH))
        reserve_ids(connection)
        _append_only(connection)
        _guards(connection)
        _set_version(connection, SCHEMA_VERSION)
        return
    if found == 1:
        upgrade_1_to_2(connection)
    if found <= 2:
        upgrade_2_to_3(connection)


def _newer(found: int) -> str:
    return (f"the records database has schema version {found}, newer than the {SCHEMA_VERSION} this program "
            "reads; upgrade the program to open it")


def revision(connection: Connection) -> str | None:
    """The Alembic revision a database is stamped with, or None (empty, or made before Alembic)."""
    return MigrationContext.configure(connection).get_current_revision()


def migrate(connection: Connection) -> tuple[int | None, int]:
    """Bring the database to this program's schema with Alembic's revisions; (version before, version after).

    Run by the database's owner (``cataract-cam records migrate``): the only step that changes the
    schema. ``connection`` is in a transaction the caller commits.

    Raises:
        SchemaVersionError: the database was written by a newer program.
    """
    from alembic import command
    from alembic.config import Config

    before = schema_version(connection)
    if before is not None and before > SCHEMA_VERSION:
        raise SchemaVersionError(_newer(before))
    settings = Config()
    settings.set_main_option("script_location", str(REVISIONS))
    settings.attributes["connection"] = connection
    command.upgrade(settings, "head")
    return before, SCHEMA_VERSION


def open_schema(connection: Connection) -> None:
    """What the program does when it opens the records: check the schema, change nothing (but an empty database).

    An empty database is created at the current version (a first start; on PostgreSQL that needs a
    role allowed to create tables, else the owner runs ``records migrate`` first). A database at an
    older version is refused: its owner migrates it, so the program's own role needs no DDL.

    Raises:
        SchemaVersionError: an older schema (to migrate), or a newer one (to upgrade the program).
    """
    found = schema_version(connection)
    if found is None:
        migrate(connection)
        return
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(_newer(found))
    stamped = revision(connection)
    if found < SCHEMA_VERSION or (stamped is not None and stamped != HEAD_REVISION):
        raise SchemaVersionError(
            f"the records database is at schema version {found}, older than this program's {SCHEMA_VERSION}; "
            "run `cataract-cam records migrate` as the database's owner, then start again"
        )


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


def _sealing_entries(connection: Connection, time: datetime) -> list[dict[str, Any]]:
    # Version 2 vouched for signed reviews only: from the migration on, the chain vouches for every fact as it is.
    patients, exams = _table(PatientRow.__tablename__), _table(ExamRow.__tablename__)
    keys = dict(connection.execute(select(patients.c.id, patients.c.seal_key)).all())
    owner = dict(connection.execute(select(exams.c.id, exams.c.patient_id)).all())
    entries = []
    for kind, table_name in (("patient", "patients"), ("exam", "exams"), ("analysis", "analyses"),
                             ("review", "reviews")):
        table = _table(table_name)
        for row in connection.execute(select(table).order_by(table.c.id)):
            patient_id = row.id if kind == "patient" else row.patient_id if kind == "exam" else owner[row.exam_id]
            entries.append({
                "time": time, "actor": "schema migration 2 to 3", "actor_issuer": UNAUTHENTICATED,
                "actor_subject": "schema-migration-3", "action": "sealed", "patient_id": patient_id,
                "object_type": kind, "object_id": str(row.id),
                "details": {"facts": facts_of(kind, row, keys[patient_id]), "migrated": True},
            })
    return entries


def upgrade_2_to_3(connection: Connection) -> None:
    """Version 2 to 3: every clinical fact sealed into the chain, IDs never reused, the chain head guarded."""
    operations = Operations(MigrationContext.configure(connection))
    operations.add_column(PatientRow.__tablename__, Column("seal_key", String(64), nullable=True))
    _table(RowIdRow.__tablename__).create(connection, checkfirst=True)  # made already when coming from 1
    _table(SignInSessionRow.__tablename__).create(connection, checkfirst=True)
    patients = _table(PatientRow.__tablename__)
    for (patient_id,) in connection.execute(select(patients.c.id)).all():
        connection.execute(update(patients).where(patients.c.id == patient_id).values(seal_key=new_seal_key()))
    reserve_ids(connection)
    head = connection.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).one()
    seq, previous = head.seq, head.hash
    for entry in _sealing_entries(connection, utc_now()):
        seq += 1
        values = {**entry, "seq": seq}
        digest = audit_hash(previous, values)
        connection.execute(insert(AuditRow).values(**values, prev_hash=previous, hash=digest))
        previous = digest
    connection.execute(update(AuditHeadRow).values(seq=seq, hash=previous))
    _guards(connection)
    _set_version(connection, 3)
