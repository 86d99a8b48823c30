"""Workflow history (FOUNDATION-0.2c): workflow_executions, workflow_steps, workflow_artifacts.

The record of every workflow run, step by step, with the artifacts it produced; also adds
agent_states.current_workflow_id now that workflow_executions exists.

Revision ID: 003_workflow_history
Revises: 002_agent_state_tables
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "003_workflow_history"
down_revision: str | None = "002_agent_state_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_executions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column(
            "workflow_type",
            sa.Enum(
                "cost_analysis",
                "performance_tuning",
                "resource_optimization",
                "quality_check",
                "scaling_decision",
                "configuration_update",
                "health_check",
                "anomaly_detection",
                name="workflow_type",
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("pending", "running", "completed", "failed", "cancelled", "timeout", name="workflow_status"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "input_data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "output_data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error_details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_workflow_executions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_workflow_executions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_executions")),
    )
    op.create_index(op.f("ix_workflow_executions_agent_id"), "workflow_executions", ["agent_id"], unique=False)
    op.create_index(
        "ix_workflow_executions_agent_id_status", "workflow_executions", ["agent_id", "status"], unique=False
    )
    op.create_index(op.f("ix_workflow_executions_customer_id"), "workflow_executions", ["customer_id"], unique=False)
    op.create_index(
        "ix_workflow_executions_customer_id_workflow_type",
        "workflow_executions",
        ["customer_id", "workflow_type"],
        unique=False,
    )
    op.create_index(op.f("ix_workflow_executions_started_at"), "workflow_executions", ["started_at"], unique=False)
    op.create_index(op.f("ix_workflow_executions_status"), "workflow_executions", ["status"], unique=False)
    op.create_index(
        op.f("ix_workflow_executions_workflow_type"), "workflow_executions", ["workflow_type"], unique=False
    )
    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workflow_execution_id", sa.UUID(), nullable=False),
        sa.Column("step_name", sa.String(length=255), nullable=False),
        sa.Column("step_order", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "running", "completed", "failed", "skipped", "retrying", name="step_status"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "input_data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "output_data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error_details", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("max_retries >= 0", name=op.f("ck_workflow_steps_max_retries_non_negative")),
        sa.CheckConstraint("retry_count >= 0", name=op.f("ck_workflow_steps_retry_count_non_negative")),
        sa.ForeignKeyConstraint(
            ["workflow_execution_id"],
            ["workflow_executions.id"],
            name=op.f("fk_workflow_steps_workflow_execution_id_workflow_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_steps")),
    )
    op.create_index(op.f("ix_workflow_steps_status"), "workflow_steps", ["status"], unique=False)
    op.create_index("ix_workflow_steps_step_name_status", "workflow_steps", ["step_name", "status"], unique=False)
    op.create_index(
        "ix_workflow_steps_workflow_execution_id_status",
        "workflow_steps",
        ["workflow_execution_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_workflow_steps_workflow_execution_id_step_order",
        "workflow_steps",
        ["workflow_execution_id", "step_order"],
        unique=False,
    )
    op.create_table(
        "workflow_artifacts",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("workflow_execution_id", sa.UUID(), nullable=False),
        sa.Column("workflow_step_id", sa.UUID(), nullable=True),
        sa.Column(
            "artifact_type",
            sa.Enum(
                "report",
                "config",
                "log",
                "recommendation",
                "chart",
                "metrics",
                "alert",
                "diagnostic",
                name="artifact_type",
            ),
            nullable=False,
        ),
        sa.Column("artifact_name", sa.String(length=255), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column("artifact_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("artifact_size_bytes >= 0", name=op.f("ck_workflow_artifacts_artifact_size_non_negative")),
        sa.ForeignKeyConstraint(
            ["workflow_execution_id"],
            ["workflow_executions.id"],
            name=op.f("fk_workflow_artifacts_workflow_execution_id_workflow_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_step_id"],
            ["workflow_steps.id"],
            name=op.f("fk_workflow_artifacts_workflow_step_id_workflow_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_artifacts")),
    )
    op.create_index(
        "ix_workflow_artifacts_workflow_execution_id_artifact_type",
        "workflow_artifacts",
        ["workflow_execution_id", "artifact_type"],
        unique=False,
    )
    op.create_index(
        "ix_workflow_artifacts_workflow_step_id_artifact_type",
        "workflow_artifacts",
        ["workflow_step_id", "artifact_type"],
        unique=False,
    )
    op.add_column("agent_states", sa.Column("current_workflow_id", sa.UUID(), nullable=True))
    op.create_index(op.f("ix_agent_states_current_workflow_id"), "agent_states", ["current_workflow_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_agent_states_current_workflow_id_workflow_executions"),
        "agent_states",
        "workflow_executions",
        ["current_workflow_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_agent_states_current_workflow_id_workflow_executions"), "agent_states", type_="foreignkey"
    )
    op.drop_index(op.f("ix_agent_states_current_workflow_id"), table_name="agent_states")
    op.drop_column("agent_states", "current_workflow_id")
    op.drop_index("ix_workflow_artifacts_workflow_step_id_artifact_type", table_name="workflow_artifacts")
    op.drop_index("ix_workflow_artifacts_workflow_execution_id_artifact_type", table_name="workflow_artifacts")
    op.drop_table("workflow_artifacts")
    op.drop_index("ix_workflow_steps_workflow_execution_id_step_order", table_name="workflow_steps")
    op.drop_index("ix_workflow_steps_workflow_execution_id_status", table_name="workflow_steps")
    op.drop_index("ix_workflow_steps_step_name_status", table_name="workflow_steps")
    op.drop_index(op.f("ix_workflow_steps_status"), table_name="workflow_steps")
    op.drop_table("workflow_steps")
    op.drop_index(op.f("ix_workflow_executions_workflow_type"), table_name="workflow_executions")
    op.drop_index(op.f("ix_workflow_executions_status"), table_name="workflow_executions")
    op.drop_index(op.f("ix_workflow_executions_started_at"), table_name="workflow_executions")
    op.drop_index("ix_workflow_executions_customer_id_workflow_type", table_name="workflow_executions")
    op.drop_index(op.f("ix_workflow_executions_customer_id"), table_name="workflow_executions")
    op.drop_index("ix_workflow_executions_agent_id_status", table_name="workflow_executions")
    op.drop_index(op.f("ix_workflow_executions_agent_id"), table_name="workflow_executions")
    op.drop_table("workflow_executions")
    # Dropping a table leaves its enum types behind; remove the ones this revision created.
    for enum_name in ("artifact_type", "step_status", "workflow_status", "workflow_type"):
        sa.Enum(name=enum_name).drop(op.get_bind())
