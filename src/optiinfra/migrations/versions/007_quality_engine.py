"""Quality engine: one open regression per model version and metric, and an index for window reads.

The judge updates an open regression instead of adding a duplicate, and must do so safely when two workers detect
the same regression at once; a partial unique index on (customer_id, model_name, model_version, regression_type,
metric_name) WHERE resolved_at IS NULL lets it upsert. The model name and version are copied onto the regression
(backfilled from its baseline here). Baselines and detection read one model version's rows in a time range, which
(customer_id, model_name, model_version, timestamp) serves directly.

Revision ID: 007_quality_engine
Revises: 006_api_credentials
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "007_quality_engine"
down_revision: str | None = "006_api_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("quality_regressions", sa.Column("model_name", sa.String(length=100), nullable=True))
    op.add_column("quality_regressions", sa.Column("model_version", sa.String(length=50), nullable=True))
    op.execute(
        "UPDATE quality_regressions r SET model_name = b.model_name, model_version = b.model_version "
        "FROM quality_baselines b WHERE b.id = r.baseline_id"
    )
    op.create_index(
        "uq_quality_regressions_open",
        "quality_regressions",
        ["customer_id", "model_name", "model_version", "regression_type", "metric_name"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index(
        "ix_quality_metrics_customer_model_version_timestamp",
        "quality_metrics",
        ["customer_id", "model_name", "model_version", "timestamp"],
    )


def downgrade() -> None:
    op.drop_index("ix_quality_metrics_customer_model_version_timestamp", table_name="quality_metrics")
    op.drop_index("uq_quality_regressions_open", table_name="quality_regressions")
    op.drop_column("quality_regressions", "model_version")
    op.drop_column("quality_regressions", "model_name")
