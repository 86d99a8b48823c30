"""OTLP ingest: evaluations that arrive before their spans, and unscored records (issue 13).

Revision ID: 012_otlp_evaluations
Revises: 011_hardening
"""

from collections.abc import Sequence

revision: str = "012_otlp_evaluations"
down_revision: str | None = "011_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
