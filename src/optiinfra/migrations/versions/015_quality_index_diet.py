"""Scale (issue 16): the indexes of quality_metrics that the reads need, and no more.

Every index is paid for on every ingested row, and quality_metrics is the table that receives one row per LLM
request. The seeds gave it 13 indexes; `benchmarks/quality_scale.py` EXPLAINs every read the project runs on it
(ingest's duplicate check, detection, the worker, the dashboard, the gates, attribution, OTLP) with 1,000,000
simulated rows, and these ten serve none of them once the reads below are kept:

- the primary key (`id`: OTLP's score updates);
- `uq_quality_metrics_customer_request (customer_id, request_id)`: idempotent ingest, and the customer foreign key;
- `ix_quality_metrics_customer_model_version_timestamp`: every window of one model version;

plus what a read proved it needs: `ix_quality_metrics_timestamp_brin`, a BRIN index on `timestamp` (32 pages a
range, summarised by autovacuum), for the reads that take a time range across a customer's versions (the deploy
gate's versions since a time, the phase gate's arm counts, OTLP's lookup of recent spans). Rows arrive in time
order, so a block-range index of a few kilobytes finds those ranges where the seeds' b-tree on `timestamp` (about
20 MB a million rows, and a write on every ingested row) did. docs/scale.md has the plans and figures.

Deleting an agent now reads quality_metrics in full to find its rows (the foreign key has no index of its own any
more): agents are never deleted through the API or the CLI, and the seeds' agent indexes cost every ingested row.

Dropping an index is instant; the downgrade rebuilds the ten, which on a large table takes minutes and blocks
writes meanwhile.

Revision ID: 015_quality_index_diet
Revises: 014_alerts
"""

from collections.abc import Sequence

from alembic import op

revision: str = "015_quality_index_diet"
down_revision: str | None = "014_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BRIN = "ix_quality_metrics_timestamp_brin"

# The seeds' indexes that no read uses (name -> columns), as 005 created them.
DROPPED: dict[str, list[str]] = {
    "ix_quality_metrics_agent_id": ["agent_id"],
    "ix_quality_metrics_agent_model": ["agent_id", "model_name"],
    "ix_quality_metrics_customer_id": ["customer_id"],
    "ix_quality_metrics_customer_model": ["customer_id", "model_name"],
    "ix_quality_metrics_hallucination_detected": ["hallucination_detected"],
    "ix_quality_metrics_model_name": ["model_name"],
    "ix_quality_metrics_model_timestamp": ["model_name", "timestamp"],
    "ix_quality_metrics_overall_quality_score": ["overall_quality_score"],
    "ix_quality_metrics_request_id": ["request_id"],
    "ix_quality_metrics_timestamp": ["timestamp"],
}


def upgrade() -> None:
    for name in DROPPED:
        op.drop_index(name, table_name="quality_metrics")
    op.create_index(
        BRIN,
        "quality_metrics",
        ["timestamp"],
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
    )


def downgrade() -> None:
    op.drop_index(BRIN, table_name="quality_metrics")
    for name, columns in DROPPED.items():
        op.create_index(name, "quality_metrics", columns)
