"""Server hardening (issue 12): dashboard sessions, and instants stored before the API checked their range are
brought into it.

`dashboard_sessions` holds one row per signed-in browser: the SHA-256 digest of its random session id (the cookie
holds the id, never the API key), the digest of the key it was opened with (the session ends when that key is
rotated or revoked), the customer (none for the operator), its CSRF token, and when it expires and was last used.

Since this revision the API refuses any instant that, converted to UTC, lies outside 1970-01-01T00:00:00Z to
2200-12-31T23:59:59Z (`optiinfra.validation.SaneInstant`). Rows written earlier may hold such instants (the probe
that found the gap stored `0001-01-01T00:00:00+14:00`, which is year 0 in UTC and made every read of the row fail
with 500). Each is clamped to the nearest end of the range: the row stays (nothing is lost), it reads again, and it
keeps its place at the far past or far future of every ordering and window. Clamping is monotone, so pairs such as
`executed_at <= completed_at` keep their order. There is no way back: downgrading leaves the clamped values.

Revision ID: 011_hardening
Revises: 010_quality_monitoring
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "011_hardening"
down_revision: str | None = "010_quality_monitoring"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EARLIEST = "1970-01-01 00:00:00+00"
LATEST = "2200-12-31 23:59:59.999999+00"

# The instants clients send (the others are set by the server from its own clock).
CLIENT_INSTANTS = {
    "quality_metrics": ["timestamp"],
    "quality_baselines": ["valid_until"],
    "resource_metrics": ["timestamp"],
    "scaling_events": ["executed_at", "completed_at"],
    "agent_metrics": ["recorded_at"],
}


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("last_seen_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_dashboard_sessions_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_dashboard_sessions_token_digest")),
    )
    op.create_index(op.f("ix_dashboard_sessions_customer_id"), "dashboard_sessions", ["customer_id"])
    op.create_index(op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"])
    for table, columns in CLIENT_INSTANTS.items():
        for column in columns:
            op.execute(
                f'UPDATE {table} SET "{column}" = '  # noqa: S608 (fixed table and column names)
                f"GREATEST(LEAST(\"{column}\", TIMESTAMPTZ '{LATEST}'), TIMESTAMPTZ '{EARLIEST}') "
                f"WHERE \"{column}\" < TIMESTAMPTZ '{EARLIEST}' OR \"{column}\" > TIMESTAMPTZ '{LATEST}'"
            )


def downgrade() -> None:
    """Drop the sessions (everyone signs in again); clamped instants stay clamped (their original values were
    unreadable)."""
    op.drop_table("dashboard_sessions")
