"""The interop ledger's tables beside the records: each exam's study UID, every send, pulled photographs' headers.

``components.interop.ledger.SendLedger`` made them itself when it first opened the database; now
the database's owner does, so the program's role needs no right to create tables. Tables already
there (made by an older program) are left as they are.

Revision ID: r0004
Revises: r0003
"""

from __future__ import annotations

from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from components.interop.ledger import LEDGER_TABLES

    LEDGER_TABLES.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("The records are never migrated down: restore a backup (cataract-cam records restore).")
