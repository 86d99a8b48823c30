"""Agent state tables (FOUNDATION-0.2b): agent_configs, agent_states, agent_capabilities, agent_metrics.

What each agent is configured with, what it is doing, what it can do and what it measures about itself.
agent_states.current_workflow_id is added by 003, which creates the table it references.

Revision ID: 002_agent_state_tables
Revises: 001_core_schema
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "002_agent_state_tables"
down_revision: str | None = "001_core_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_capabilities",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("capability_name", sa.String(length=255), nullable=False),
        sa.Column("capability_version", sa.String(length=50), server_default="1.0.0", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_capabilities_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_capabilities")),
        sa.UniqueConstraint("agent_id", "capability_name", name="uq_agent_capability"),
    )
    op.create_index(
        op.f("ix_agent_capabilities_capability_name"), "agent_capabilities", ["capability_name"], unique=False
    )
    op.create_index(op.f("ix_agent_capabilities_enabled"), "agent_capabilities", ["enabled"], unique=False)
    op.create_table(
        "agent_configs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("config_key", sa.String(length=255), nullable=False),
        sa.Column("config_value", sa.Text(), nullable=False),
        sa.Column(
            "config_type",
            sa.Enum("string", "integer", "float", "boolean", "json", name="configtype"),
            server_default="string",
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_configs_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_configs")),
        sa.UniqueConstraint("agent_id", "config_key", name="uq_agent_config"),
    )
    op.create_index(op.f("ix_agent_configs_agent_id"), "agent_configs", ["agent_id"], unique=False)
    op.create_index(op.f("ix_agent_configs_config_key"), "agent_configs", ["config_key"], unique=False)
    op.create_table(
        "agent_metrics",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("metric_name", sa.String(length=255), nullable=False),
        sa.Column("metric_value", sa.Double(), nullable=False),
        sa.Column(
            "metric_type",
            sa.Enum("counter", "gauge", "histogram", name="metrictype"),
            server_default="gauge",
            nullable=False,
        ),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_metrics_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_metrics")),
    )
    op.create_index("ix_agent_metrics_agent_id_metric_name", "agent_metrics", ["agent_id", "metric_name"], unique=False)
    op.create_index("ix_agent_metrics_agent_id_recorded_at", "agent_metrics", ["agent_id", "recorded_at"], unique=False)
    op.create_index(op.f("ix_agent_metrics_metric_name"), "agent_metrics", ["metric_name"], unique=False)
    op.create_index(op.f("ix_agent_metrics_recorded_at"), "agent_metrics", ["recorded_at"], unique=False)
    op.create_table(
        "agent_states",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column(
            "current_status",
            sa.Enum("idle", "busy", "processing", "waiting", "error", name="agentstatusdetail"),
            server_default="idle",
            nullable=False,
        ),
        sa.Column(
            "active_workflows",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "locks",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("last_activity", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "resource_usage",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_states_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_states")),
        sa.UniqueConstraint("agent_id", name=op.f("uq_agent_states_agent_id")),
    )
    op.create_index(op.f("ix_agent_states_current_status"), "agent_states", ["current_status"], unique=False)
    op.create_index(op.f("ix_agent_states_last_activity"), "agent_states", ["last_activity"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_states_last_activity"), table_name="agent_states")
    op.drop_index(op.f("ix_agent_states_current_status"), table_name="agent_states")
    op.drop_table("agent_states")
    op.drop_index(op.f("ix_agent_metrics_recorded_at"), table_name="agent_metrics")
    op.drop_index(op.f("ix_agent_metrics_metric_name"), table_name="agent_metrics")
    op.drop_index("ix_agent_metrics_agent_id_recorded_at", table_name="agent_metrics")
    op.drop_index("ix_agent_metrics_agent_id_metric_name", table_name="agent_metrics")
    op.drop_table("agent_metrics")
    op.drop_index(op.f("ix_agent_configs_config_key"), table_name="agent_configs")
    op.drop_index(op.f("ix_agent_configs_agent_id"), table_name="agent_configs")
    op.drop_table("agent_configs")
    op.drop_index(op.f("ix_agent_capabilities_enabled"), table_name="agent_capabilities")
    op.drop_index(op.f("ix_agent_capabilities_capability_name"), table_name="agent_capabilities")
    op.drop_table("agent_capabilities")
    # Dropping a table leaves its enum types behind; remove the ones this revision created.
    for enum_name in ("metrictype", "agentstatusdetail", "configtype"):
        sa.Enum(name=enum_name).drop(op.get_bind())
