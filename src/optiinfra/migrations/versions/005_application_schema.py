"""Application schema (FOUNDATION-0.2e): quality_metrics, quality_baselines, quality_regressions.

Per-request LLM quality metrics, the baselines per model version, and detected regressions. Unlike the seed,
all timestamps have a time zone and carry server defaults, request_id is unique per customer, scores are
checked to [0, 1], and indexes duplicating the primary key or each other are gone (docs/schema.md).

Revision ID: 005_application_schema
Revises: 004_resource_schema
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "005_application_schema"
down_revision: str | None = "004_resource_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quality_baselines",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=50), nullable=False),
        sa.Column(
            "baseline_type",
            sa.Enum("initial", "updated", "rollback", name="baseline_type"),
            server_default="initial",
            nullable=False,
        ),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column("avg_relevance_score", sa.Double(), nullable=True),
        sa.Column("avg_coherence_score", sa.Double(), nullable=True),
        sa.Column("avg_factuality_score", sa.Double(), nullable=True),
        sa.Column("avg_overall_score", sa.Double(), nullable=False),
        sa.Column("p95_latency_ms", sa.Double(), nullable=True),
        sa.Column("established_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "avg_coherence_score >= 0 AND avg_coherence_score <= 1",
            name=op.f("ck_quality_baselines_avg_coherence_score_range"),
        ),
        sa.CheckConstraint(
            "avg_factuality_score >= 0 AND avg_factuality_score <= 1",
            name=op.f("ck_quality_baselines_avg_factuality_score_range"),
        ),
        sa.CheckConstraint(
            "avg_overall_score >= 0 AND avg_overall_score <= 1",
            name=op.f("ck_quality_baselines_avg_overall_score_range"),
        ),
        sa.CheckConstraint(
            "avg_relevance_score >= 0 AND avg_relevance_score <= 1",
            name=op.f("ck_quality_baselines_avg_relevance_score_range"),
        ),
        sa.CheckConstraint("p95_latency_ms >= 0", name=op.f("ck_quality_baselines_p95_latency_ms_non_negative")),
        sa.CheckConstraint("sample_size > 0", name=op.f("ck_quality_baselines_sample_size_positive")),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_quality_baselines_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_quality_baselines_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_baselines")),
    )
    op.create_index(op.f("ix_quality_baselines_agent_id"), "quality_baselines", ["agent_id"], unique=False)
    op.create_index("ix_quality_baselines_agent_model", "quality_baselines", ["agent_id", "model_name"], unique=False)
    op.create_index(op.f("ix_quality_baselines_baseline_type"), "quality_baselines", ["baseline_type"], unique=False)
    op.create_index(op.f("ix_quality_baselines_customer_id"), "quality_baselines", ["customer_id"], unique=False)
    op.create_index(
        "ix_quality_baselines_customer_model",
        "quality_baselines",
        ["customer_id", "model_name"],
        unique=False,
    )
    op.create_index(op.f("ix_quality_baselines_established_at"), "quality_baselines", ["established_at"], unique=False)
    op.create_index(op.f("ix_quality_baselines_model_name"), "quality_baselines", ["model_name"], unique=False)
    op.create_table(
        "quality_metrics",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=50), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("relevance_score", sa.Double(), nullable=True),
        sa.Column("coherence_score", sa.Double(), nullable=True),
        sa.Column("factuality_score", sa.Double(), nullable=True),
        sa.Column("hallucination_detected", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("toxicity_score", sa.Double(), nullable=True),
        sa.Column("overall_quality_score", sa.Double(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "coherence_score >= 0 AND coherence_score <= 1",
            name=op.f("ck_quality_metrics_coherence_score_range"),
        ),
        sa.CheckConstraint("completion_tokens >= 0", name=op.f("ck_quality_metrics_completion_tokens_non_negative")),
        sa.CheckConstraint(
            "factuality_score >= 0 AND factuality_score <= 1",
            name=op.f("ck_quality_metrics_factuality_score_range"),
        ),
        sa.CheckConstraint("latency_ms >= 0", name=op.f("ck_quality_metrics_latency_ms_non_negative")),
        sa.CheckConstraint(
            "overall_quality_score >= 0 AND overall_quality_score <= 1",
            name=op.f("ck_quality_metrics_overall_quality_score_range"),
        ),
        sa.CheckConstraint("prompt_tokens >= 0", name=op.f("ck_quality_metrics_prompt_tokens_non_negative")),
        sa.CheckConstraint(
            "relevance_score >= 0 AND relevance_score <= 1",
            name=op.f("ck_quality_metrics_relevance_score_range"),
        ),
        sa.CheckConstraint(
            "toxicity_score >= 0 AND toxicity_score <= 1",
            name=op.f("ck_quality_metrics_toxicity_score_range"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_quality_metrics_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_quality_metrics_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_metrics")),
        sa.UniqueConstraint("customer_id", "request_id", name="uq_quality_metrics_customer_request"),
    )
    op.create_index(op.f("ix_quality_metrics_agent_id"), "quality_metrics", ["agent_id"], unique=False)
    op.create_index("ix_quality_metrics_agent_model", "quality_metrics", ["agent_id", "model_name"], unique=False)
    op.create_index(op.f("ix_quality_metrics_customer_id"), "quality_metrics", ["customer_id"], unique=False)
    op.create_index("ix_quality_metrics_customer_model", "quality_metrics", ["customer_id", "model_name"], unique=False)
    op.create_index(
        op.f("ix_quality_metrics_hallucination_detected"),
        "quality_metrics",
        ["hallucination_detected"],
        unique=False,
    )
    op.create_index(op.f("ix_quality_metrics_model_name"), "quality_metrics", ["model_name"], unique=False)
    op.create_index("ix_quality_metrics_model_timestamp", "quality_metrics", ["model_name", "timestamp"], unique=False)
    op.create_index(
        op.f("ix_quality_metrics_overall_quality_score"),
        "quality_metrics",
        ["overall_quality_score"],
        unique=False,
    )
    op.create_index(op.f("ix_quality_metrics_request_id"), "quality_metrics", ["request_id"], unique=False)
    op.create_index(op.f("ix_quality_metrics_timestamp"), "quality_metrics", ["timestamp"], unique=False)
    op.create_table(
        "quality_regressions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("baseline_id", sa.UUID(), nullable=False),
        sa.Column("workflow_execution_id", sa.UUID(), nullable=True),
        sa.Column(
            "regression_type",
            sa.Enum(
                "quality_drop",
                "latency_increase",
                "hallucination_spike",
                "toxicity_increase",
                name="regression_type",
            ),
            nullable=False,
        ),
        sa.Column(
            "severity",
            sa.Enum("low", "medium", "high", "critical", name="regression_severity"),
            nullable=False,
        ),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric_name", sa.String(length=100), nullable=False),
        sa.Column("baseline_value", sa.Double(), nullable=False),
        sa.Column("current_value", sa.Double(), nullable=False),
        sa.Column("delta_percent", sa.Double(), nullable=False),
        sa.Column("sample_size", sa.Integer(), nullable=False),
        sa.Column(
            "action_taken",
            sa.Enum("alert_only", "rollback_triggered", "manual_review", "auto_fixed", name="regression_action"),
            server_default="alert_only",
            nullable=False,
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_notes", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("sample_size >= 0", name=op.f("ck_quality_regressions_sample_size_non_negative")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_quality_regressions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["quality_baselines.id"],
            name=op.f("fk_quality_regressions_baseline_id_quality_baselines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_quality_regressions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_execution_id"],
            ["workflow_executions.id"],
            name=op.f("fk_quality_regressions_workflow_execution_id_workflow_executions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_regressions")),
    )
    op.create_index(op.f("ix_quality_regressions_action_taken"), "quality_regressions", ["action_taken"], unique=False)
    op.create_index(op.f("ix_quality_regressions_agent_id"), "quality_regressions", ["agent_id"], unique=False)
    op.create_index(
        "ix_quality_regressions_agent_severity", "quality_regressions", ["agent_id", "severity"], unique=False
    )
    op.create_index(op.f("ix_quality_regressions_baseline_id"), "quality_regressions", ["baseline_id"], unique=False)
    op.create_index(op.f("ix_quality_regressions_customer_id"), "quality_regressions", ["customer_id"], unique=False)
    op.create_index(
        "ix_quality_regressions_customer_type",
        "quality_regressions",
        ["customer_id", "regression_type"],
        unique=False,
    )
    op.create_index(op.f("ix_quality_regressions_detected_at"), "quality_regressions", ["detected_at"], unique=False)
    op.create_index(
        op.f("ix_quality_regressions_regression_type"),
        "quality_regressions",
        ["regression_type"],
        unique=False,
    )
    op.create_index(op.f("ix_quality_regressions_severity"), "quality_regressions", ["severity"], unique=False)
    op.create_index(
        "ix_quality_regressions_unresolved",
        "quality_regressions",
        ["customer_id", "detected_at"],
        unique=False,
        postgresql_where="resolved_at IS NULL",
    )
    op.create_index(
        op.f("ix_quality_regressions_workflow_execution_id"),
        "quality_regressions",
        ["workflow_execution_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quality_regressions_workflow_execution_id"), table_name="quality_regressions")
    op.drop_index(
        "ix_quality_regressions_unresolved",
        table_name="quality_regressions",
        postgresql_where="resolved_at IS NULL",
    )
    op.drop_index(op.f("ix_quality_regressions_severity"), table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_regression_type"), table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_detected_at"), table_name="quality_regressions")
    op.drop_index("ix_quality_regressions_customer_type", table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_customer_id"), table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_baseline_id"), table_name="quality_regressions")
    op.drop_index("ix_quality_regressions_agent_severity", table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_agent_id"), table_name="quality_regressions")
    op.drop_index(op.f("ix_quality_regressions_action_taken"), table_name="quality_regressions")
    op.drop_table("quality_regressions")
    op.drop_index(op.f("ix_quality_metrics_timestamp"), table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_request_id"), table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_overall_quality_score"), table_name="quality_metrics")
    op.drop_index("ix_quality_metrics_model_timestamp", table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_model_name"), table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_hallucination_detected"), table_name="quality_metrics")
    op.drop_index("ix_quality_metrics_customer_model", table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_customer_id"), table_name="quality_metrics")
    op.drop_index("ix_quality_metrics_agent_model", table_name="quality_metrics")
    op.drop_index(op.f("ix_quality_metrics_agent_id"), table_name="quality_metrics")
    op.drop_table("quality_metrics")
    op.drop_index(op.f("ix_quality_baselines_model_name"), table_name="quality_baselines")
    op.drop_index(op.f("ix_quality_baselines_established_at"), table_name="quality_baselines")
    op.drop_index("ix_quality_baselines_customer_model", table_name="quality_baselines")
    op.drop_index(op.f("ix_quality_baselines_customer_id"), table_name="quality_baselines")
    op.drop_index(op.f("ix_quality_baselines_baseline_type"), table_name="quality_baselines")
    op.drop_index("ix_quality_baselines_agent_model", table_name="quality_baselines")
    op.drop_index(op.f("ix_quality_baselines_agent_id"), table_name="quality_baselines")
    op.drop_table("quality_baselines")
    # Dropping a table leaves its enum types behind; remove the ones this revision created.
    for enum_name in ("regression_action", "regression_severity", "regression_type", "baseline_type"):
        sa.Enum(name=enum_name).drop(op.get_bind())
