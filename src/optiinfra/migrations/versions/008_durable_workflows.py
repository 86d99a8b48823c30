"""Durable workflows: the job queue's tables, and the statuses of waiting, paused and cancelling runs (issue 10).

Workflow runs are executed by `optiinfra worker` processes that take jobs from procrastinate's PostgreSQL queue. Its
tables, types and functions (all named `procrastinate_*`) are created from the SQL schema shipped inside the pinned
procrastinate package (3.10.x); a newer procrastinate needs a migration that applies its own migration scripts.
`workflow_status` gains `waiting`, `paused` and `cancelling`; `step_status` gains `waiting` and `paused`.

Revision ID: 008_durable_workflows
Revises: 007_quality_engine
"""

from collections.abc import Sequence
from importlib import resources

from alembic import op

revision: str = "008_durable_workflows"
down_revision: str | None = "007_quality_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_WORKFLOW = ("pending", "running", "completed", "failed", "cancelled", "timeout")
OLD_STEP = ("pending", "running", "completed", "failed", "skipped", "retrying")


def upgrade() -> None:
    schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")
    op.execute(schema)
    # PostgreSQL 12+ adds enum values inside a transaction; they are only used by later transactions.
    for value in ("waiting", "paused", "cancelling"):
        op.execute(f"ALTER TYPE workflow_status ADD VALUE IF NOT EXISTS '{value}'")
    for value in ("waiting", "paused"):
        op.execute(f"ALTER TYPE step_status ADD VALUE IF NOT EXISTS '{value}'")


def _shrink_enum(table: str, column: str, type_name: str, values: tuple[str, ...], mapping: dict[str, str]) -> None:
    cases = " ".join(f"WHEN '{new}' THEN '{old}'" for new, old in mapping.items())
    op.execute(f"ALTER TYPE {type_name} RENAME TO {type_name}_old")
    op.execute(f"CREATE TYPE {type_name} AS ENUM ({', '.join(repr(v) for v in values)})")
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT")
    op.execute(
        f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_name} USING "
        f"(CASE {column}::text {cases} ELSE {column}::text END)::{type_name}"
    )
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT 'pending'")
    op.execute(f"DROP TYPE {type_name}_old")


def downgrade() -> None:
    # Runs that wait, pause or are being cancelled become what the older runner knew: running (recovered as crashed)
    # or cancelled.
    _shrink_enum(
        "workflow_executions",
        "status",
        "workflow_status",
        OLD_WORKFLOW,
        {"waiting": "running", "paused": "running", "cancelling": "cancelled"},
    )
    _shrink_enum("workflow_steps", "status", "step_status", OLD_STEP, {"waiting": "running", "paused": "running"})
    # Every procrastinate object: tables (with their triggers and indexes), functions and types.
    op.execute(
        """
        DO $$
        DECLARE item record;
        BEGIN
            FOR item IN SELECT tablename FROM pg_tables
                        WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.tablename);
            END LOOP;
            FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', item.signature);
            END LOOP;
            FOR item IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                        WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
                          AND t.typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
            END LOOP;
        END $$;
        """
    )
