"""Hourly quality rollups (issue 16).

Revision ID: 017_quality_rollups
Revises: 016_quality_partitions
"""

from collections.abc import Sequence

revision: str = "017_quality_rollups"
down_revision: str | None = "016_quality_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
