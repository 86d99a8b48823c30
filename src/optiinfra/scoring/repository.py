"""Scoring queries: texts queued by the ingest, claimed by workers, scores written back, text deleted.

All SQL here is fixed text with bound parameters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.quality.schemas import SCORES_PENDING_KEY

CLAIM_SECONDS = 300  # a worker holds the texts it scores this long; a dead worker's texts return to the queue then
MAX_ATTEMPTS = 5  # a text whose scoring failed this often is no longer claimed; it is deleted at its expiry

_QUEUE_TEXTS = text(
    "INSERT INTO scoring_texts (quality_metric_id, quality_metric_timestamp, customer_id, prompt, response, context, "
    "expires_at) SELECT m.id, m.timestamp, m.customer_id, t.prompt, t.response, t.context, :expires_at "
    "FROM unnest(CAST(:request_ids AS text[]), CAST(:prompts AS text[]), CAST(:responses AS text[]), "
    "CAST(:contexts AS text[])) AS t(request_id, prompt, response, context) "
    # The keys table says where each record is (quality_metrics is partitioned by timestamp).
    "JOIN quality_request_keys AS k ON k.customer_id = :customer_id AND k.request_id = t.request_id "
    "JOIN quality_metrics AS m ON m.id = k.quality_metric_id AND m.timestamp = k.quality_metric_timestamp "
    "WHERE m.metadata ? :pending ON CONFLICT (quality_metric_id) DO NOTHING"
)
_CLAIM = text(
    "UPDATE scoring_texts AS s SET claimed_until = now() + make_interval(secs => :claim_seconds), "
    "attempts = s.attempts + 1 FROM ("
    " SELECT quality_metric_id FROM scoring_texts WHERE scored_at IS NULL AND attempts < :max_attempts"
    " AND (claimed_until IS NULL OR claimed_until < now()) AND expires_at > now()"
    " ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED"
    ") AS picked WHERE s.quality_metric_id = picked.quality_metric_id "
    "RETURNING s.quality_metric_id, s.customer_id, s.prompt, s.response, s.context, s.attempts, "
    "s.quality_metric_timestamp"
)
_WRITE_SCORES = text(
    "UPDATE quality_metrics SET relevance_score = :relevance_score, coherence_score = :coherence_score, "
    "factuality_score = :factuality_score, toxicity_score = :toxicity_score, "
    "hallucination_detected = :hallucination_detected, overall_quality_score = :overall_quality_score, "
    "metadata = (metadata - :pending) || :extra WHERE id = :id AND timestamp = :timestamp AND metadata ? :pending"
)
_KEEP_TEXT = text(
    "UPDATE scoring_texts SET scored_at = now(), claimed_until = NULL, last_error = NULL, "
    "expires_at = now() + make_interval(days => :days) WHERE quality_metric_id = :id"
)
_DROP_TEXT = text("DELETE FROM scoring_texts WHERE quality_metric_id = :id")
_FAILED = text("UPDATE scoring_texts SET claimed_until = NULL, last_error = :error WHERE quality_metric_id = ANY(:ids)")
_EXPIRE = text("DELETE FROM scoring_texts WHERE expires_at <= now()")
_WAITING = text(
    "SELECT EXISTS (SELECT 1 FROM scoring_texts WHERE scored_at IS NULL AND attempts < :max_attempts "
    "AND (claimed_until IS NULL OR claimed_until < now()) AND expires_at > now())"
)


@dataclass(frozen=True)
class QueuedText:
    quality_metric_id: uuid.UUID
    customer_id: uuid.UUID
    prompt: str
    response: str
    context: str | None
    attempts: int
    quality_metric_timestamp: datetime


def queue_texts(
    session: Session, customer_id: uuid.UUID, texts: Sequence[tuple[str, str, str, str | None]], expires_at: datetime
) -> int:
    """Queue (request id, prompt, response, context) of the customer's records that wait for scores."""
    if not texts:
        return 0
    result = session.execute(
        _QUEUE_TEXTS,
        {
            "customer_id": customer_id,
            "request_ids": [row[0] for row in texts],
            "prompts": [row[1] for row in texts],
            "responses": [row[2] for row in texts],
            "contexts": [row[3] for row in texts],
            "expires_at": expires_at,
            "pending": SCORES_PENDING_KEY,
        },
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim(session: Session, limit: int) -> list[QueuedText]:
    """Claim up to `limit` texts waiting for scores (oldest first); other workers skip them while claimed."""
    rows = session.execute(_CLAIM, {"claim_seconds": CLAIM_SECONDS, "max_attempts": MAX_ATTEMPTS, "limit": limit}).all()
    return [QueuedText(row[0], row[1], row[2], row[3], row[4], int(row[5]), row[6]) for row in rows]


def write_scores(session: Session, updates: Sequence[dict[str, Any]]) -> int:
    """Write scores to records still waiting for them (a record already scored, or given its own evaluations in
    the meantime, is left as it is: writing twice changes nothing)."""
    if not updates:
        return 0
    params = [{**update, "extra": Jsonb(update["extra"]), "pending": SCORES_PENDING_KEY} for update in updates]
    result = session.execute(_WRITE_SCORES, params)
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish_texts(session: Session, ids_and_retention: Sequence[tuple[uuid.UUID, int | None]]) -> None:
    """After scoring: delete each text, or keep it `days` more when its customer keeps text for drill-down."""
    kept = [{"id": item_id, "days": days} for item_id, days in ids_and_retention if days]
    dropped = [{"id": item_id} for item_id, days in ids_and_retention if not days]
    if kept:
        session.execute(_KEEP_TEXT, kept)
    if dropped:
        session.execute(_DROP_TEXT, dropped)


def release_failed(session: Session, ids: Sequence[uuid.UUID], error: str) -> None:
    session.execute(_FAILED, {"ids": list(ids), "error": error[:2000]})


def delete_expired(session: Session) -> int:
    return int(session.execute(_EXPIRE).rowcount)  # type: ignore[attr-defined]


def texts_waiting(session: Session) -> bool:
    return bool(session.scalar(_WAITING, {"max_attempts": MAX_ATTEMPTS}))


def retention(days: int) -> timedelta:
    return timedelta(days=days)
