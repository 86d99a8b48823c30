"""Alert routes, the alert outbox and its delivery log (issue 15).

Revision ID: 014_alerts
Revises: 013_scorers
"""

from collections.abc import Sequence

revision: str = "014_alerts"
down_revision: str | None = "013_scorers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
