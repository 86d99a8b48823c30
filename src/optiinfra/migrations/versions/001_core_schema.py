"""Core schema (FOUNDATION-0.2a): customers, agents, events, recommendations, approvals, optimizations.

The tables every agent and the control loop build on, with their nine enum types. Fixes the seed's defects:
recommendationstatus ends in 'rolled_back' (the seed migration's 'none' was a typo), confidence_score is a float
in [0, 1], every timestamp has a time zone, and indexes that duplicated others were dropped (docs/schema.md).

Revision ID: 001_core_schema
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "001_core_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(
            "type",
            sa.Enum("orchestrator", "cost", "performance", "resource", "application", name="agenttype"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=True),
        sa.Column(
            "status",
            sa.Enum("starting", "healthy", "degraded", "failed", "stopped", name="agentstatus"),
            server_default="starting",
            nullable=False,
        ),
        sa.Column("endpoint", sa.String(length=255), nullable=True),
        sa.Column(
            "capabilities",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("type", "name", name="uq_agent_type_name"),
    )
    op.create_index("idx_agent_heartbeat", "agents", ["last_heartbeat"], unique=False)
    op.create_index("idx_agent_status", "agents", ["status"], unique=False)
    op.create_index("idx_agent_type", "agents", ["type"], unique=False)
    op.create_table(
        "customers",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("api_key", sa.String(length=64), nullable=False),
        sa.Column(
            "plan",
            sa.Enum("free", "startup", "enterprise", name="customerplan"),
            server_default="free",
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("active", "suspended", "churned", name="customerstatus"),
            server_default="active",
            nullable=False,
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index(op.f("ix_customers_api_key"), "customers", ["api_key"], unique=True)
    op.create_index(op.f("ix_customers_email"), "customers", ["email"], unique=True)
    op.create_index(op.f("ix_customers_status"), "customers", ["status"], unique=False)
    op.create_table(
        "events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column(
            "severity",
            sa.Enum("info", "warning", "error", "critical", name="eventseverity"),
            server_default="info",
            nullable=False,
        ),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_events_agent_id_agents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_agent_id"), "events", ["agent_id"], unique=False)
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)
    op.create_index(op.f("ix_events_customer_id"), "events", ["customer_id"], unique=False)
    op.create_index(op.f("ix_events_event_type"), "events", ["event_type"], unique=False)
    op.create_index(op.f("ix_events_severity"), "events", ["severity"], unique=False)
    op.create_table(
        "recommendations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("estimated_savings", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("estimated_improvement", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("confidence_score", sa.Double(), server_default="0", nullable=False),
        sa.Column(
            "priority",
            sa.Enum("low", "medium", "high", "critical", name="recommendationpriority"),
            server_default="medium",
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                "executing",
                "completed",
                "failed",
                "rolled_back",
                name="recommendationstatus",
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("confidence_score >= 0 AND confidence_score <= 1", name=op.f("check_confidence_range")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_recommendations_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_recommendations_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendations")),
    )
    op.create_index(op.f("ix_recommendations_agent_id"), "recommendations", ["agent_id"], unique=False)
    op.create_index(op.f("ix_recommendations_created_at"), "recommendations", ["created_at"], unique=False)
    op.create_index(op.f("ix_recommendations_customer_id"), "recommendations", ["customer_id"], unique=False)
    op.create_index(op.f("ix_recommendations_priority"), "recommendations", ["priority"], unique=False)
    op.create_index(op.f("ix_recommendations_status"), "recommendations", ["status"], unique=False)
    op.create_index(op.f("ix_recommendations_type"), "recommendations", ["type"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("recommendation_id", sa.UUID(), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "approved", "rejected", name="approvalstatus"),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.id"],
            name=op.f("fk_approvals_recommendation_id_recommendations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index("idx_approval_rec", "approvals", ["recommendation_id"], unique=False)
    op.create_index("idx_approval_status", "approvals", ["status"], unique=False)
    op.create_table(
        "optimizations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("recommendation_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "executing", "completed", "failed", "rolled_back", name="optimizationstatus"),
            server_default="queued",
            nullable=False,
        ),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "result",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actual_savings", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("actual_improvement", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name=op.f("check_progress_range")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_optimizations_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_optimizations_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendations.id"],
            name=op.f("fk_optimizations_recommendation_id_recommendations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizations")),
    )
    op.create_index("idx_opt_agent", "optimizations", ["agent_id"], unique=False)
    op.create_index("idx_opt_customer", "optimizations", ["customer_id"], unique=False)
    op.create_index("idx_opt_customer_status", "optimizations", ["customer_id", "status"], unique=False)
    op.create_index("idx_opt_rec", "optimizations", ["recommendation_id"], unique=False)
    op.create_index("idx_opt_status", "optimizations", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index("idx_opt_status", table_name="optimizations")
    op.drop_index("idx_opt_rec", table_name="optimizations")
    op.drop_index("idx_opt_customer_status", table_name="optimizations")
    op.drop_index("idx_opt_customer", table_name="optimizations")
    op.drop_index("idx_opt_agent", table_name="optimizations")
    op.drop_table("optimizations")
    op.drop_index("idx_approval_status", table_name="approvals")
    op.drop_index("idx_approval_rec", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index(op.f("ix_recommendations_type"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_status"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_priority"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_customer_id"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_created_at"), table_name="recommendations")
    op.drop_index(op.f("ix_recommendations_agent_id"), table_name="recommendations")
    op.drop_table("recommendations")
    op.drop_index(op.f("ix_events_severity"), table_name="events")
    op.drop_index(op.f("ix_events_event_type"), table_name="events")
    op.drop_index(op.f("ix_events_customer_id"), table_name="events")
    op.drop_index(op.f("ix_events_created_at"), table_name="events")
    op.drop_index(op.f("ix_events_agent_id"), table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_customers_status"), table_name="customers")
    op.drop_index(op.f("ix_customers_email"), table_name="customers")
    op.drop_index(op.f("ix_customers_api_key"), table_name="customers")
    op.drop_table("customers")
    op.drop_index("idx_agent_type", table_name="agents")
    op.drop_index("idx_agent_status", table_name="agents")
    op.drop_index("idx_agent_heartbeat", table_name="agents")
    op.drop_table("agents")
    # Dropping a table leaves its enum types behind; remove the ones this revision created.
    for enum_name in (
        "optimizationstatus",
        "approvalstatus",
        "recommendationstatus",
        "recommendationpriority",
        "eventseverity",
        "agentstatus",
        "agenttype",
        "customerstatus",
        "customerplan",
    ):
        sa.Enum(name=enum_name).drop(op.get_bind())
