"""Regressions grouped into incidents as the monitoring and its alerts group them: per model version, the
regressions open together form one incident; one detected after all were resolved opens the next."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from optiinfra.quality.schemas import Regression
from optiinfra.quality.service import group_incidents

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CUSTOMER = uuid.uuid4()


def _regression(
    metric: str,
    detected_minutes: int,
    resolved_minutes: int | None,
    *,
    version: str = "v1",
    severity: str = "medium",
    action: str = "alert_only",
    **metadata: Any,
) -> Regression:
    return Regression.model_validate(
        {
            "id": uuid.uuid4(),
            "customer_id": CUSTOMER,
            "agent_id": uuid.uuid4(),
            "baseline_id": uuid.uuid4(),
            "workflow_execution_id": None,
            "model_name": "chat",
            "model_version": version,
            "regression_type": "quality_drop",
            "severity": severity,
            "detected_at": T0 + timedelta(minutes=detected_minutes),
            "metric_name": metric,
            "baseline_value": 0.9,
            "current_value": 0.7,
            "delta_percent": -22.2,
            "sample_size": 100,
            "action_taken": action,
            "resolved_at": None if resolved_minutes is None else T0 + timedelta(minutes=resolved_minutes),
            "resolution_notes": None,
            "metadata": metadata,
            "created_at": T0,
            "updated_at": T0,
        }
    )


def test_regressions_open_together_are_one_incident_with_the_worst_severity_and_strongest_action() -> None:
    first = _regression("overall_quality_score", 0, 90, evidence={"window_minutes": 30})
    joined = _regression(
        "p95_latency_ms",
        20,
        60,
        severity="critical",
        action="rollback_triggered",
        rolled_back_optimization_id="opt-1",
        evidence={"window_minutes": 60},
    )
    later = _regression("hallucination_rate", 200, None)
    other_version = _regression("overall_quality_score", 10, None, version="v2")
    incidents = group_incidents([later, joined, other_version, first])
    assert len(incidents) == 3
    newest, v2, grouped = incidents  # newest first
    assert [r.metric_name for r in grouped.regressions] == ["overall_quality_score", "p95_latency_ms"]
    assert grouped.id == first.id
    assert grouped.severity == "critical"
    assert grouped.action_taken == "rollback_triggered"
    assert grouped.rolled_back_optimization_ids == ["opt-1"]
    assert grouped.started_at == first.detected_at
    assert grouped.ended_at == T0 + timedelta(minutes=90)
    assert grouped.window_start == T0 - timedelta(minutes=40)  # the latency window began before the first look
    assert newest.regressions == [later]
    assert newest.is_open
    assert v2.model_version == "v2"


def test_a_detection_window_marks_where_the_records_begin() -> None:
    start = T0 - timedelta(hours=3)
    regression = _regression("overall_quality_score", 0, None, window={"start": start.isoformat(), "last_n": 100})
    (incident,) = group_incidents([regression])
    assert incident.window_start == start
    assert incident.ended_at is None
