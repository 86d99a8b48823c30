"""Issue 14, offline scoring: the text of records waiting for the application agent's scorers.

A record sent with its prompt, answer and context but without scores is stored in `quality_metrics` like any other
(marked `metadata.scores_pending`, so nothing reads a score from it yet), and its text waits here, apart from the
metrics, until a worker has scored it. Then the text is deleted, unless the customer keeps text for drill-down: it
stays until `expires_at`. Text never scored is deleted at `expires_at` too (nothing keeps text forever).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, Integer, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from optiinfra.models.base import Base, CreatedAt, UUIDPrimaryKey


class ScoringText(UUIDPrimaryKey, CreatedAt, Base):
    """The text of one quality record, kept for scoring (and, if the customer opts in, for drill-down)."""

    __tablename__ = "scoring_texts"
    __table_args__ = (
        # The scoring queue: texts not scored yet, oldest first.
        Index("ix_scoring_texts_pending", "created_at", postgresql_where=text("scored_at IS NULL")),
        # quality_metrics is partitioned by timestamp (migration 016): its primary key is (id, timestamp).
        ForeignKeyConstraint(
            ["quality_metric_id", "quality_metric_timestamp"],
            ["quality_metrics.id", "quality_metrics.timestamp"],
            ondelete="CASCADE",
        ),
    )

    quality_metric_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    quality_metric_timestamp: Mapped[datetime]
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(Text)
    # A worker scoring this text holds it until then; a worker that died lets it go back to the queue.
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime | None]
    expires_at: Mapped[datetime] = mapped_column(index=True)
