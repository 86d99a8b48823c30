"""Server hardening: dashboard sessions, sane instants (issue 12).

Revision ID: 011_hardening
Revises: 010_quality_monitoring
"""

from collections.abc import Sequence

revision: str = "011_hardening"
down_revision: str | None = "010_quality_monitoring"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
