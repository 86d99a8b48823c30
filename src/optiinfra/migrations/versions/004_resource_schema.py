"""Resource schema (FOUNDATION-0.2d): resource_metrics, scaling_events.

Per-instance resource time series (GPU, CPU, memory, disk, network) and the scaling actions taken on them.

Revision ID: 004_resource_schema
Revises: 003_workflow_history
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "004_resource_schema"
down_revision: str | None = "003_workflow_history"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_metrics",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column(
            "resource_type",
            sa.Enum("gpu", "cpu", "memory", "disk", "network", name="resource_type"),
            nullable=False,
        ),
        sa.Column("metric_name", sa.String(length=100), nullable=False),
        sa.Column("metric_value", sa.Double(), nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_resource_metrics_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_resource_metrics_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_metrics")),
    )
    op.create_index(
        "ix_resource_metrics_agent_id_instance_id",
        "resource_metrics",
        ["agent_id", "instance_id"],
        unique=False,
    )
    op.create_index(
        "ix_resource_metrics_customer_id_resource_type",
        "resource_metrics",
        ["customer_id", "resource_type"],
        unique=False,
    )
    op.create_index(
        "ix_resource_metrics_instance_id_timestamp",
        "resource_metrics",
        ["instance_id", "timestamp"],
        unique=False,
    )
    op.create_index(
        "ix_resource_metrics_resource_type_metric_name",
        "resource_metrics",
        ["resource_type", "metric_name"],
        unique=False,
    )
    op.create_index(op.f("ix_resource_metrics_timestamp"), "resource_metrics", ["timestamp"], unique=False)
    op.create_table(
        "scaling_events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("workflow_execution_id", sa.UUID(), nullable=True),
        sa.Column(
            "event_type",
            sa.Enum(
                "scale_up",
                "scale_down",
                "auto_scale_triggered",
                "manual_scale",
                "scale_cancelled",
                name="scaling_event_type",
            ),
            nullable=False,
        ),
        sa.Column("trigger_reason", sa.String(length=500), nullable=False),
        sa.Column("before_state", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("after_state", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("success", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("error_details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_scaling_events_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_scaling_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_execution_id"],
            ["workflow_executions.id"],
            name=op.f("fk_scaling_events_workflow_execution_id_workflow_executions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scaling_events")),
    )
    op.create_index("ix_scaling_events_agent_id_event_type", "scaling_events", ["agent_id", "event_type"], unique=False)
    op.create_index("ix_scaling_events_customer_id_success", "scaling_events", ["customer_id", "success"], unique=False)
    op.create_index(op.f("ix_scaling_events_executed_at"), "scaling_events", ["executed_at"], unique=False)
    op.create_index(
        op.f("ix_scaling_events_workflow_execution_id"),
        "scaling_events",
        ["workflow_execution_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_scaling_events_workflow_execution_id"), table_name="scaling_events")
    op.drop_index(op.f("ix_scaling_events_executed_at"), table_name="scaling_events")
    op.drop_index("ix_scaling_events_customer_id_success", table_name="scaling_events")
    op.drop_index("ix_scaling_events_agent_id_event_type", table_name="scaling_events")
    op.drop_table("scaling_events")
    op.drop_index(op.f("ix_resource_metrics_timestamp"), table_name="resource_metrics")
    op.drop_index("ix_resource_metrics_resource_type_metric_name", table_name="resource_metrics")
    op.drop_index("ix_resource_metrics_instance_id_timestamp", table_name="resource_metrics")
    op.drop_index("ix_resource_metrics_customer_id_resource_type", table_name="resource_metrics")
    op.drop_index("ix_resource_metrics_agent_id_instance_id", table_name="resource_metrics")
    op.drop_table("resource_metrics")
    # Dropping a table leaves its enum types behind; remove the ones this revision created.
    for enum_name in ("scaling_event_type", "resource_type"):
        sa.Enum(name=enum_name).drop(op.get_bind())
