"""Offline scoring by the application agent (issue 14).

Revision ID: 013_scorers
Revises: 012_otlp_evaluations
"""

from collections.abc import Sequence

revision: str = "013_scorers"
down_revision: str | None = "012_otlp_evaluations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
