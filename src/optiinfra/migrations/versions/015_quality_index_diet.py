"""Scale (issue 16): the indexes of quality_metrics that the reads need, and no more.

Revision ID: 015_quality_index_diet
Revises: 014_alerts
"""

from collections.abc import Sequence

revision: str = "015_quality_index_diet"
down_revision: str | None = "014_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
