"""API credentials and platform events for the control-plane API.

The 18 seed tables have no place for an agent's own API key, nor for events that belong to no tenant (an agent
registering or changing health serves every customer). This revision adds `agents.api_key_digest` (SHA-256 of
the agent's key, never the key), `agents.heartbeat_interval_seconds` (what health is derived from), and lets
`events.customer_id` be NULL for platform events, which only the operator can read.

Revision ID: 006_api_credentials
Revises: 005_application_schema
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "006_api_credentials"
down_revision: str | None = "005_application_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("api_key_digest", sa.String(length=64), nullable=True))
    op.add_column("agents", sa.Column("heartbeat_interval_seconds", sa.Integer(), server_default="30", nullable=False))
    op.create_index(op.f("ix_agents_api_key_digest"), "agents", ["api_key_digest"], unique=True)
    op.create_check_constraint(
        op.f("ck_agents_heartbeat_interval_positive"), "agents", "heartbeat_interval_seconds > 0"
    )
    op.alter_column("events", "customer_id", existing_type=sa.UUID(), nullable=True)


def downgrade() -> None:
    # Platform events have no tenant to go back to; the NOT NULL of 001 cannot hold them.
    op.execute("DELETE FROM events WHERE customer_id IS NULL")
    op.alter_column("events", "customer_id", existing_type=sa.UUID(), nullable=False)
    op.drop_constraint(op.f("ck_agents_heartbeat_interval_positive"), "agents", type_="check")
    op.drop_index(op.f("ix_agents_api_key_digest"), table_name="agents")
    op.drop_column("agents", "heartbeat_interval_seconds")
    op.drop_column("agents", "api_key_digest")
