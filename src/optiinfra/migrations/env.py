"""Alembic environment: always run with a connection handed over by optiinfra.db.migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from optiinfra.models import Base

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=context.config.attributes.get("include_object"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `optiinfra db ...`, which provides the database connection.")
run_migrations(connection)
