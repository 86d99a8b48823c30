"""Prometheus sources per customer (issue 19).

Revision ID: 018_prometheus_sources
Revises: 017_quality_rollups
"""

from collections.abc import Sequence

revision: str = "018_prometheus_sources"
down_revision: str | None = "017_quality_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
