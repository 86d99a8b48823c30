"""Continuous quality monitoring: baselines by hour and stratum, incidents (issue 11).

Revision ID: 010_quality_monitoring
Revises: 009_agent_customers
"""

from collections.abc import Sequence

revision: str = "010_quality_monitoring"
down_revision: str | None = "009_agent_customers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
