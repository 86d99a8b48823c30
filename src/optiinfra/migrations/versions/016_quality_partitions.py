"""Partitioned quality_metrics, dedupe keys and retention (issue 16).

Revision ID: 016_quality_partitions
Revises: 015_quality_index_diet
"""

from collections.abc import Sequence

revision: str = "016_quality_partitions"
down_revision: str | None = "015_quality_index_diet"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
