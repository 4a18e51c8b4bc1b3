"""Alembic environment of the gateway's PostgreSQL schema (run by :mod:`gateway.migrations`).

The connection comes from ``config.attributes["connection"]`` (a SQLAlchemy connection on the
configured DSN); there is no ``alembic.ini`` and no URL in any file.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
