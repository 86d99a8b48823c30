"""Agents assigned to the customers they serve (issue 10).

An agent used to be able to act for any customer it named: ingest quality records, replace a baseline, detect, and
so roll back another tenant's optimization. From this revision an agent acts only for the customers in
`agent_customers` (the operator assigns them; `optiinfra.tenancy` applies them to every query an agent makes).

So that an upgrade does not silently cut off agents that work today, each existing agent is assigned to every
customer it already has rows for in the tables that record work done for a customer: recommendations,
optimizations, workflow executions, quality metrics, baselines and regressions, resource metrics and scaling
events (the event log is not evidence: any agent could write an event naming any customer). Each assignment made
here is written to the event log as `agent.customer_assigned` by `system:migration-009`, so the operator can review
them (`optiinfra agents show`, `GET /api/v1/events?event_type=agent.customer_assigned`) and unassign what should not
be there: an agent that abused the old rules has rows for its victims and is assigned to them too.

Downgrade drops the table (the log keeps the events).

Revision ID: 009_agent_customers
Revises: 008_durable_workflows
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "009_agent_customers"
down_revision: str | None = "008_durable_workflows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Tables whose rows say "this agent did this for this customer".
EVIDENCE_TABLES = (
    "recommendations",
    "optimizations",
    "workflow_executions",
    "quality_metrics",
    "quality_baselines",
    "quality_regressions",
    "resource_metrics",
    "scaling_events",
)


def upgrade() -> None:
    op.create_table(
        "agent_customers",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_customers_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_agent_customers_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_customers")),
        sa.UniqueConstraint("agent_id", "customer_id", name="uq_agent_customer"),
    )
    op.create_index("idx_agent_customers_customer_id", "agent_customers", ["customer_id"], unique=False)

    # The table names are the constants above, not input.
    pairs = " UNION ".join(f"SELECT DISTINCT agent_id, customer_id FROM {table}" for table in EVIDENCE_TABLES)  # noqa: S608
    op.execute(
        f"""
        WITH assigned AS (
            INSERT INTO agent_customers (agent_id, customer_id)
            SELECT agent_id, customer_id FROM ({pairs}) AS pairs
            WHERE agent_id IS NOT NULL AND customer_id IS NOT NULL
            ON CONFLICT ON CONSTRAINT uq_agent_customer DO NOTHING
            RETURNING agent_id, customer_id
        )
        INSERT INTO events (customer_id, agent_id, event_type, severity, data, created_at)
        SELECT customer_id, agent_id, 'agent.customer_assigned', 'info',
               jsonb_build_object(
                   'actor', jsonb_build_object('role', 'operator', 'name', 'system:migration-009'),
                   'subject', jsonb_build_object('agent_id', agent_id::text, 'customer_id', customer_id::text),
                   'reason', 'the agent had rows for this customer when assignments were introduced'
               ),
               clock_timestamp()
        FROM assigned
        """  # noqa: S608 (the table names are the constants above)
    )


def downgrade() -> None:
    op.drop_index("idx_agent_customers_customer_id", table_name="agent_customers")
    op.drop_table("agent_customers")
