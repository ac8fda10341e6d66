"""Alembic's environment for the records database.

The connection is the one :func:`components.records.migrations.migrate` opened (as the database's
owner, in one transaction); nothing here reads a URL or a configuration file.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
