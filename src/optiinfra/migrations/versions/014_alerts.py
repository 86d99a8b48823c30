"""Alert routes, the alert outbox and its delivery log, and shared metric counters (issue 15).

`alert_routes` says where a customer's alerts go (a signed JSON webhook, Slack, Microsoft Teams, e-mail) and which
ones. `alert_outbox` holds one row per (route, alert), written in the same transaction as the event it reports, so
an alert exists exactly when its event does; workers deliver it with retries and record every attempt in
`alert_deliveries`. `metric_counters` holds the Prometheus counters that the API and every worker add to in their
own transactions, summed at scrape time, so `/metrics` tells the same from any process.

No new enum type: statuses and destinations are short strings with CHECK constraints; severities reuse
`eventseverity`.

Revision ID: 014_alerts
Revises: 013_scorers
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "014_alerts"
down_revision: str | None = "013_scorers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = postgresql.TIMESTAMP(timezone=True)


def _severity() -> postgresql.ENUM:
    return postgresql.ENUM("info", "warning", "error", "critical", name="eventseverity", create_type=False)


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _now(name: str) -> sa.Column[Any]:
    return sa.Column(name, TIMESTAMP, server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "alert_routes",
        _id(),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("destination", sa.String(length=20), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("signing_secret", sa.String(length=100), nullable=True),
        sa.Column("email_to", sa.String(length=320), nullable=True),
        sa.Column("event_kinds", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("min_severity", _severity(), server_default="info", nullable=False),
        sa.Column("model_names", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("throttle_seconds", sa.Integer(), server_default="900", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint(
            "destination IN ('webhook', 'slack', 'teams', 'email')", name=op.f("ck_alert_routes_destination_known")
        ),
        sa.CheckConstraint("throttle_seconds >= 0", name=op.f("ck_alert_routes_throttle_non_negative")),
        sa.CheckConstraint(
            "(destination = 'email') = (email_to IS NOT NULL)", name=op.f("ck_alert_routes_email_has_address")
        ),
        sa.CheckConstraint("(destination = 'email') = (url IS NULL)", name=op.f("ck_alert_routes_url_unless_email")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_alert_routes_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_routes")),
    )
    op.create_index(op.f("ix_alert_routes_customer_id"), "alert_routes", ["customer_id"])

    op.create_table(
        "alert_outbox",
        _id(),
        sa.Column("route_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", _severity(), nullable=False),
        sa.Column("subject_key", sa.String(length=600), nullable=False),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("payload", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="8", nullable=False),
        _now("next_attempt_at"),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'delivered', 'failed', 'superseded')",
            name=op.f("ck_alert_outbox_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name=op.f("ck_alert_outbox_attempts_range")),
        sa.ForeignKeyConstraint(
            ["route_id"], ["alert_routes.id"], name=op.f("fk_alert_outbox_route_id_alert_routes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_alert_outbox_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_alert_outbox_event_id_events"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
    )
    op.create_index(op.f("ix_alert_outbox_customer_id"), "alert_outbox", ["customer_id"])
    op.create_index(op.f("ix_alert_outbox_event_id"), "alert_outbox", ["event_id"])
    op.create_index(op.f("ix_alert_outbox_status"), "alert_outbox", ["status"])
    op.create_index("ix_alert_outbox_route_subject", "alert_outbox", ["route_id", "subject_key", "created_at"])
    op.create_index(
        "ix_alert_outbox_due",
        "alert_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )

    op.create_table(
        "alert_deliveries",
        _id(),
        sa.Column("outbox_id", sa.UUID(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["alert_outbox.id"],
            name=op.f("fk_alert_deliveries_outbox_id_alert_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    op.create_index(op.f("ix_alert_deliveries_outbox_id"), "alert_deliveries", ["outbox_id"])

    op.create_table(
        "metric_counters",
        _id(),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("labels", sa.String(length=300), nullable=False),
        sa.Column("customer_key", sa.String(length=36), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_counters")),
        sa.UniqueConstraint("name", "labels", "customer_key", "shard", name="uq_metric_counters_series"),
    )


def downgrade() -> None:
    op.drop_table("metric_counters")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_outbox")
    op.drop_table("alert_routes")
