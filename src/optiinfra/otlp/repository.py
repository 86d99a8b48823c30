"""OTLP queries: per-key locks, stored records that evaluations land on, evaluations waiting for their span, and
the report of what was not understood.

Evaluations waiting for their span and the not-understood counts are kept in the event log (event types below):
they are things that happened to the customer's telemetry, and the log already keeps them per customer with a time.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, BigInteger, String, any_, bindparam, select, text, update
from sqlalchemy.orm import Session

from optiinfra.models import Event, QualityMetric
from optiinfra.otlp.mapping import Evaluation
from optiinfra.quality import repository as quality_repository

PENDING_EVENT = "otlp.evaluations_pending"
REPORT_EVENT = "otlp.not_understood"
# How long an evaluation waits for its span, and how far back an evaluation matched by span context looks.
PENDING_RETENTION = timedelta(days=7)
LOCK_BUCKETS = 128
_LOCK_NAMESPACE = b"optiinfra.otlp"
_LOCK_QUERY = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(:ids) AS k ORDER BY 1) AS ordered"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))


def lock_keys(session: Session, customer_id: uuid.UUID, keys: Iterable[str]) -> None:
    """Serialise writers of the same request ids (a span and its evaluations arriving at once), so neither misses
    the other; keys hash to a bounded number of transaction-scoped advisory locks, always taken in order."""
    buckets = {int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) % LOCK_BUCKETS for key in keys}
    if not buckets:
        return
    lock_ids = sorted(
        int.from_bytes(
            hashlib.blake2b(_LOCK_NAMESPACE + customer_id.bytes + bucket.to_bytes(2), digest_size=8).digest(),
            signed=True,
        )
        for bucket in buckets
    )
    session.execute(_LOCK_QUERY, {"ids": lock_ids}).scalar_one()


@dataclass
class StoredRecord:
    id: uuid.UUID
    timestamp: datetime  # with id, the primary key of the partitioned quality_metrics
    request_id: str
    scores: dict[str, Any]
    metadata: dict[str, Any]


SCORE_COLUMNS = ("relevance_score", "coherence_score", "factuality_score", "toxicity_score", "hallucination_detected")


def stored_records(
    session: Session, customer_id: uuid.UUID, keys: Sequence[str], span_ids: Sequence[str], since: datetime
) -> list[StoredRecord]:
    """The customer's records whose request id is one of `keys`, or whose span is one of `span_ids` (recent ones)."""
    columns = (
        QualityMetric.id,
        QualityMetric.timestamp,
        QualityMetric.request_id,
        *(getattr(QualityMetric, name) for name in SCORE_COLUMNS),
        QualityMetric.metadata_,
    )
    found: dict[uuid.UUID, StoredRecord] = {}
    statements = []
    if keys:
        statements.append(select(*columns).where(quality_repository.by_request_id(customer_id, keys)))
    if span_ids:
        statements.append(
            select(*columns).where(
                QualityMetric.customer_id == customer_id,
                QualityMetric.timestamp >= since,
                QualityMetric.metadata_["span_id"].astext
                == any_(bindparam("span_ids", list(span_ids), type_=ARRAY(String))),
            )
        )
    for statement in statements:
        for row in session.execute(statement):
            found[row[0]] = StoredRecord(
                id=row[0],
                timestamp=row[1],
                request_id=row[2],
                scores=dict(zip(SCORE_COLUMNS, row[3:-1], strict=True)),
                metadata=dict(row[-1] or {}),
            )
    return list(found.values())


def update_records(session: Session, updates: Sequence[dict[str, Any]]) -> None:
    """Write new scores (dicts with id and timestamp, the score columns, overall_quality_score and metadata_)."""
    if updates:
        session.execute(update(QualityMetric), list(updates))


def pending_evaluations(
    session: Session, customer_id: uuid.UUID, keys: Sequence[str], since: datetime
) -> list[Evaluation]:
    """Evaluations received before their span, for any of these keys, oldest first."""
    if not keys:
        return []
    wanted = set(keys)
    rows = session.scalars(
        select(Event.data)
        .where(
            Event.customer_id == customer_id,
            Event.event_type == PENDING_EVENT,
            Event.created_at >= since,
            Event.data["keys"].has_any(bindparam("pending_keys", sorted(wanted), type_=ARRAY(String))),
        )
        .order_by(Event.created_at)
    )
    found = []
    for data in rows:
        for raw in data.get("evaluations", []):
            evaluation = Evaluation.from_json(raw)
            if wanted.intersection(evaluation.match_keys):
                found.append(evaluation)
    return found


_REPORT_QUERY = text(
    """
    SELECT kind.key AS kind, item.key AS name, sum((item.value ->> 'count')::bigint) AS count,
           (array_agg(item.value ->> 'example' ORDER BY e.created_at DESC))[1] AS example,
           min(e.created_at) AS first_seen_at, max(e.created_at) AS last_seen_at
    FROM events AS e
    CROSS JOIN LATERAL jsonb_each(e.data -> 'items') AS kind
    CROSS JOIN LATERAL jsonb_each(kind.value) AS item
    WHERE e.customer_id = :customer_id AND e.event_type = :event_type AND e.created_at >= :since
    GROUP BY kind.key, item.key
    ORDER BY kind.key, count DESC, item.key
    LIMIT :limit
    """
)


def report(session: Session, customer_id: uuid.UUID, since: datetime, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        _REPORT_QUERY, {"customer_id": customer_id, "event_type": REPORT_EVENT, "since": since, "limit": limit}
    ).mappings()
    return [dict(row) for row in rows]
