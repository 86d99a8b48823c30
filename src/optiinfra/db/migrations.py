"""Schema migrations through Alembic, with the migration scripts shipped inside the package."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from optiinfra.errors import SchemaNotCurrentError
from optiinfra.models import QUALITY_PARTITION_PREFIX, Base

VERSION_TABLE = "alembic_version"


# The job queue (procrastinate) keeps its own tables, created by migration 008 from its shipped schema.
QUEUE_PREFIX = "procrastinate_"


def alembic_config() -> Config:
    """An Alembic configuration pointing at the migrations inside the installed package."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("optiinfra") / "migrations"))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of OptiInfra knows."""
    head = script_directory().get_current_head()
    assert head is not None, "the migration chain has more than one head"
    return head


def _run(engine: Engine, operation: str, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, operation)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database schema to `revision` (default: the newest)."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the database schema to `revision` (`base` removes every table)."""
    _run(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty (unmigrated) database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


async def current_revision_quickly(conninfo: str, timeout_seconds: float) -> str | None:
    """The schema revision, read on a connection of its own (never a pool's) that gives up within about
    `timeout_seconds`: what a readiness probe asks. None when no migration has run."""
    options = f"-c statement_timeout={int(timeout_seconds * 1000)}"
    async with await psycopg.AsyncConnection.connect(
        conninfo, connect_timeout=max(1, int(timeout_seconds)), options=options
    ) as connection:
        try:
            cursor = await connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 (a constant)
        except psycopg.errors.UndefinedTable:
            return None
        row = await cursor.fetchone()
        return str(row[0]) if row else None


def known_revisions() -> list[str]:
    """Every revision id of the chain, oldest first."""
    return [script.revision for script in reversed(list(script_directory().walk_revisions()))]


@dataclass(frozen=True)
class SchemaDifference:
    """One difference between the models and the database, as Alembic's comparison reports it."""

    operation: str
    subject: str


def schema_differences(engine: Engine) -> list[SchemaDifference]:
    """Compare the models with the migrated database (Alembic's autogenerate comparison)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                # quality_metrics' partitions are described by the model of their parent (migration 016).
                "include_name": lambda name, kind, _parent: (
                    not (
                        kind == "table"
                        and (name == VERSION_TABLE or (name or "").startswith((QUEUE_PREFIX, QUALITY_PARTITION_PREFIX)))
                    )
                ),
                # PostgreSQL clones a foreign key to a partitioned table once per partition (internal constraints).
                "include_object": lambda item, _name, kind, reflected, _compare_to: (
                    not (
                        kind == "foreign_key_constraint"
                        and reflected
                        and item.referred_table.name.startswith(QUALITY_PARTITION_PREFIX)
                    )
                ),
            },
        )
        diffs = compare_metadata(context, Base.metadata)
    return [_describe(diff) for diff in _flatten(diffs)]


def _flatten(diffs: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for diff in diffs:
        # Column modifications arrive grouped in a list; everything else is one tuple.
        if isinstance(diff, list):
            flat.extend(diff)
        else:
            flat.append(diff)
    return flat


def _describe(diff: tuple[Any, ...]) -> SchemaDifference:
    operation = diff[0]
    if operation in {"add_table", "remove_table"}:
        subject = diff[1].name
    elif operation in {"add_index", "remove_index"}:
        index = diff[1]
        subject = f"{index.table.name}.{index.name} ({', '.join(c.name for c in index.columns)})"
    elif operation in {"add_constraint", "remove_constraint", "add_fk", "remove_fk"}:
        constraint = diff[1]
        subject = f"{constraint.table.name}.{constraint.name}"
    elif operation in {"add_column", "remove_column"}:
        subject = f"{diff[2]}.{diff[3].name}"
    elif operation.startswith("modify_"):
        _, _schema, table, column, _info, old, new = diff
        subject = f"{table}.{column}: database has {old!r}, models have {new!r}"
    else:
        subject = repr(diff[1:])
    return SchemaDifference(operation=operation, subject=subject)


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at head, naming the command that fixes it."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaNotCurrentError("The database has no OptiInfra schema yet.", fix="Run: optiinfra db upgrade")
    if current not in known_revisions():
        raise SchemaNotCurrentError(
            f"The database schema is at {current}, a revision this version of OptiInfra does not know "
            "(a newer OptiInfra migrated it).",
            fix="Upgrade OptiInfra (pip install -U optiinfra) to the version that wrote it.",
        )
    raise SchemaNotCurrentError(f"The database schema is at {current}, behind {head}.", fix="Run: optiinfra db upgrade")
