"""The records at schema version 3, the first revision under Alembic.

From an empty database: every table at version 3, the audit head, the ID counters, the
append-only rules and the guards. From a database made before Alembic took over (schema
versions 1 and 2, recorded in its ``schema_version`` table): the upgrades 1 to 2 and 2 to 3,
which chain what they change into the audit trail. A database already at version 3 is only
stamped. Later schema changes are revisions after this one.

Revision ID: r0003
Revises: none
"""

from __future__ import annotations

from alembic import op

revision = "r0003"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from components.records.migrations import bring_to_version_3

    bring_to_version_3(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("The records are never migrated down: restore a backup (cataract-cam records restore).")
