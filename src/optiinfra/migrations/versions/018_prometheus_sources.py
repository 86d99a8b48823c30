"""Prometheus sources per customer (issue 19).

`prometheus_sources` holds a customer's Prometheus server (URL, optional authentication, label mappings, query
step, first look-back) and the collector's progress on it (`collected_until`, last attempt, success and error).
Collected samples go to the existing `resource_metrics` and `agent_metrics`; no new enum type.

Revision ID: 018_prometheus_sources
Revises: 017_quality_rollups
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "018_prometheus_sources"
down_revision: str | None = "017_quality_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = postgresql.TIMESTAMP(timezone=True)


def _now(name: str) -> sa.Column[Any]:
    return sa.Column(name, TIMESTAMP, server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "prometheus_sources",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("auth_type", sa.String(length=10), server_default="none", nullable=False),
        sa.Column("auth_username", sa.String(length=255), nullable=True),
        sa.Column("auth_secret", sa.String(length=1000), nullable=True),
        sa.Column("instance_label", sa.String(length=100), server_default="instance", nullable=False),
        sa.Column("instance_type_label", sa.String(length=100), server_default="instance_type", nullable=False),
        sa.Column("zone_label", sa.String(length=100), server_default="zone", nullable=False),
        sa.Column("purchase_option_label", sa.String(length=100), server_default="capacity_type", nullable=False),
        sa.Column("step_seconds", sa.Integer(), server_default="60", nullable=False),
        sa.Column("lookback_hours", sa.Integer(), server_default="168", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("collected_until", TIMESTAMP, nullable=True),
        sa.Column("last_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_success_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint(
            "auth_type IN ('none', 'basic', 'bearer')", name=op.f("ck_prometheus_sources_auth_type_known")
        ),
        sa.CheckConstraint(
            "(auth_type = 'none') = (auth_secret IS NULL)", name=op.f("ck_prometheus_sources_secret_when_authenticated")
        ),
        sa.CheckConstraint(
            "(auth_type = 'basic') = (auth_username IS NOT NULL)",
            name=op.f("ck_prometheus_sources_username_when_basic"),
        ),
        sa.CheckConstraint("step_seconds BETWEEN 1 AND 3600", name=op.f("ck_prometheus_sources_step_range")),
        sa.CheckConstraint("lookback_hours BETWEEN 1 AND 2160", name=op.f("ck_prometheus_sources_lookback_range")),
        sa.CheckConstraint("consecutive_failures >= 0", name=op.f("ck_prometheus_sources_failures_non_negative")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_prometheus_sources_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prometheus_sources")),
        sa.UniqueConstraint("customer_id", "name", name="uq_prometheus_sources_customer_name"),
    )
    op.create_index(op.f("ix_prometheus_sources_customer_id"), "prometheus_sources", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_prometheus_sources_customer_id"), table_name="prometheus_sources")
    op.drop_table("prometheus_sources")
