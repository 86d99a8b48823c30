"""Agents assigned to the customers they serve (issue 10).

Revision ID: 009_agent_customers
Revises: 008_durable_workflows
"""

from collections.abc import Sequence

revision: str = "009_agent_customers"
down_revision: str | None = "008_durable_workflows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
