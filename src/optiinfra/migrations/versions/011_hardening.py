"""Server hardening (issue 12): instants stored before the API checked their range are brought into it.

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

from alembic import op

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
    for table, columns in CLIENT_INSTANTS.items():
        for column in columns:
            op.execute(
                f'UPDATE {table} SET "{column}" = '  # noqa: S608 (fixed table and column names)
                f"GREATEST(LEAST(\"{column}\", TIMESTAMPTZ '{LATEST}'), TIMESTAMPTZ '{EARLIEST}') "
                f"WHERE \"{column}\" < TIMESTAMPTZ '{EARLIEST}' OR \"{column}\" > TIMESTAMPTZ '{LATEST}'"
            )


def downgrade() -> None:
    """Clamped instants stay clamped (their original values were unreadable)."""
