"""Counters that every process (the API, any number of workers) adds to in its own transactions.

A counter is a set of rows of `metric_counters`, one per (name, labels, customer, backend): the shard is the
PostgreSQL backend's process id, so concurrent transactions never touch the same row (no waiting, no deadlock), and
an addition is committed or rolled back with the work it counts. `/metrics` sums the rows, so every process reports
the same totals; a counter only decreases if rows are deleted by hand (Prometheus treats that as a reset).
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from optiinfra.models import Event, MetricCounter, QualityRegression

# The counters and their label values, declared so that /metrics shows each series (as 0) before it first counts.
RECORD_SOURCES = ("json", "otlp", "import")
DETECTION_SOURCES = ("worker", "api")
VERDICTS = ("pass", "regression", "insufficient_data", "no_baseline")
INCIDENT_SEVERITIES = ("low", "medium", "high", "critical")
WORKFLOW_OUTCOMES = ("completed", "failed", "cancelled", "timeout")
DELIVERY_OUTCOMES = ("delivered", "retry", "failed")

COUNTERS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "optiinfra_quality_records_ingested": ("Quality records stored.", {"source": RECORD_SOURCES}),
    "optiinfra_quality_records_duplicate": (
        "Quality records received again (same request id) and not stored twice.",
        {"source": RECORD_SOURCES},
    ),
    "optiinfra_quality_records_rejected": ("Quality records refused as invalid.", {"source": RECORD_SOURCES}),
    "optiinfra_detection_passes": (
        "Model versions judged, by where the judgement ran and its verdict.",
        {"source": DETECTION_SOURCES, "verdict": VERDICTS},
    ),
    "optiinfra_incidents_opened": (
        "Quality regressions opened, by severity at opening.",
        {"severity": INCIDENT_SEVERITIES},
    ),
    "optiinfra_incidents_resolved": ("Quality regressions resolved, by severity.", {"severity": INCIDENT_SEVERITIES}),
    "optiinfra_rollbacks": ("Optimizations rolled back (by a person or by the quality policy).", {}),
    "optiinfra_workflow_runs": ("Workflow runs ended, by status.", {"status": WORKFLOW_OUTCOMES}),
    "optiinfra_alert_deliveries": (
        "Alert delivery attempts by outcome (retry: failed, another attempt follows; failed: gave up).",
        {"outcome": DELIVERY_OUTCOMES},
    ),
}


def label_text(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def add(
    session: Session,
    name: str,
    labels: dict[str, str] | None = None,
    amount: int = 1,
    customer_id: uuid.UUID | None = None,
) -> None:
    """Add `amount` to a counter, in the session's transaction."""
    if amount <= 0:
        return
    statement = insert(MetricCounter).values(
        name=name,
        labels=label_text(labels or {}),
        customer_key=str(customer_id) if customer_id is not None else "",
        shard=func.pg_backend_pid(),
        value=amount,
    )
    session.execute(
        statement.on_conflict_do_update(
            constraint="uq_metric_counters_series",
            set_={"value": MetricCounter.value + statement.excluded.value, "updated_at": func.now()},
        )
    )


def count_event(session: Session, event: Event) -> None:
    """The counters an event stands for (incidents, rollbacks, workflow runs), added with the event."""
    kind = event.event_type
    customer_id = event.customer_id
    if kind == "quality.regression_detected":
        severity = str((event.data.get("after") or {}).get("severity"))
        add(session, "optiinfra_incidents_opened", {"severity": severity}, customer_id=customer_id)
    elif kind == "quality.regression_resolved":
        regression_id = (event.data.get("subject") or {}).get("regression_id")
        regression = session.get(QualityRegression, uuid.UUID(str(regression_id))) if regression_id else None
        if regression is not None:
            add(
                session, "optiinfra_incidents_resolved", {"severity": str(regression.severity)}, customer_id=customer_id
            )
    elif kind == "optimization.rolled_back":
        add(session, "optiinfra_rollbacks", customer_id=customer_id)
    elif kind.startswith("workflow.") and kind.removeprefix("workflow.") in WORKFLOW_OUTCOMES:
        add(session, "optiinfra_workflow_runs", {"status": kind.removeprefix("workflow.")}, customer_id=customer_id)
