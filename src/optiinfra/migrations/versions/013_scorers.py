"""Offline scoring by the application agent (issue 14): the text of records waiting for the scorers.

`scoring_texts` holds, per quality record sent with its prompt, answer and context but no scores, that text until a
worker has scored the record (a queue: the partial index on `created_at` covers only texts not scored yet). Text is
kept apart from `quality_metrics` so the metrics stay small and the text can be deleted on its own schedule: right
after scoring, or at `expires_at` when the customer keeps text for drill-down. Deleting a record deletes its text.

Revision ID: 013_scorers
Revises: 012_otlp_evaluations
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "013_scorers"
down_revision: str | None = "012_otlp_evaluations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_texts",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("quality_metric_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("claimed_until", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("scored_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_scoring_texts_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["quality_metric_id"],
            ["quality_metrics.id"],
            name=op.f("fk_scoring_texts_quality_metric_id_quality_metrics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_texts")),
        sa.UniqueConstraint("quality_metric_id", name=op.f("uq_scoring_texts_quality_metric_id")),
    )
    op.create_index(op.f("ix_scoring_texts_customer_id"), "scoring_texts", ["customer_id"], unique=False)
    op.create_index(op.f("ix_scoring_texts_expires_at"), "scoring_texts", ["expires_at"], unique=False)
    op.create_index(
        "ix_scoring_texts_pending",
        "scoring_texts",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("scored_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_scoring_texts_pending", table_name="scoring_texts", postgresql_where=sa.text("scored_at IS NULL"))
    op.drop_index(op.f("ix_scoring_texts_expires_at"), table_name="scoring_texts")
    op.drop_index(op.f("ix_scoring_texts_customer_id"), table_name="scoring_texts")
    op.drop_table("scoring_texts")
