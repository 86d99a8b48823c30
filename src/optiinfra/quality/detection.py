"""Detection: run the judge on a window, record regressions (one open per metric), resolve recovered ones, and act
by the customer's policy, rolling back only an optimization the window's evidence names (`attribution`).

Quality sits below the optimization lifecycle: detection does not import it, it is given the rollback it may take
(`Rollback`, provided by `optiinfra.recommendations.service.rollback_for_quality`) by its callers, the edges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.errors import ConflictError
from optiinfra.events import service as events
from optiinfra.metrics import counters
from optiinfra.models import (
    EventSeverity,
    QualityBaseline,
    QualityRegression,
    RegressionAction,
    RegressionSeverity,
)
from optiinfra.quality import repository
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.attribution import attribute
from optiinfra.quality.evaluation import evaluate
from optiinfra.quality.service import resolve_customer
from optiinfra.quality.settings import QualitySettings, settings_of

SEVERITY_ORDER = [
    RegressionSeverity.LOW,
    RegressionSeverity.MEDIUM,
    RegressionSeverity.HIGH,
    RegressionSeverity.CRITICAL,
]
EVENT_SEVERITY = {
    RegressionSeverity.LOW: EventSeverity.INFO,
    RegressionSeverity.MEDIUM: EventSeverity.WARNING,
    RegressionSeverity.HIGH: EventSeverity.ERROR,
    RegressionSeverity.CRITICAL: EventSeverity.CRITICAL,
}
SYSTEM = Principal.system("quality")


class Rollback(Protocol):
    """The rollback detection may take: roll back one optimization, as `actor`, for `reason` (same transaction)."""

    def __call__(self, session: Session, actor: Principal, optimization_id: uuid.UUID, reason: str) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def detect(
    session: Session, principal: Principal, request: quality_schemas.DetectRequest, rollback: Rollback
) -> quality_schemas.DetectionReport:
    """Run the judge for one model version and, unless dry_run, record and act on what it finds (`rollback` when the
    policy says so and the evidence names the optimization)."""
    principal.require(Role.CUSTOMER, Role.AGENT, Role.OPERATOR)
    if not request.dry_run:
        principal.require_writable()
    customer = resolve_customer(session, principal, request.customer_id)
    key = f"quality-detect:{customer.id}:{request.model_name}:{request.model_version}"
    if not request.dry_run and not repository.lock_key(session, key):
        raise ConflictError("Detection for this model version is already running; try again shortly.")
    settings = settings_of(customer)
    now = _now()
    baseline, rows, findings, verdict = evaluate(
        session, customer.id, request.model_name, request.model_version, request.window, settings, now
    )
    window_info: dict[str, Any] = {
        "start": request.window.start or rows.first_at,
        "end": request.window.end or rows.last_at,
        "last_n": request.window.last_n,
        "sample_size": rows.size,
    }
    window_info = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in window_info.items()}
    report = quality_schemas.DetectionReport(
        customer_id=customer.id,
        model_name=request.model_name,
        model_version=request.model_version,
        baseline_id=baseline.id if baseline else None,
        verdict=verdict,  # type: ignore[arg-type]
        window=window_info,
        findings=findings,
    )
    if not request.dry_run:
        labels = {"source": "api", "verdict": verdict if baseline is not None else "no_baseline"}
        counters.add(session, "optiinfra_detection_passes", labels, customer_id=customer.id)
    if request.dry_run or baseline is None or verdict == "insufficient_data":
        return report
    return _record_and_act(session, principal, customer.id, baseline, rows, findings, settings, report, now, rollback)


def _record_and_act(
    session: Session,
    principal: Principal,
    customer_id: uuid.UUID,
    baseline: QualityBaseline,
    rows: repository.WindowRows,
    findings: list[quality_schemas.Finding],
    settings: QualitySettings,
    report: quality_schemas.DetectionReport,
    now: datetime,
    rollback: Rollback,
) -> quality_schemas.DetectionReport:
    detected: list[QualityRegression] = []
    resolved: list[QualityRegression] = []
    affected = sum(1 for _ in rows.overall)
    for finding in findings:
        if finding.verdict == "insufficient_data":
            continue
        existing = repository.open_regression(
            session,
            customer_id,
            baseline.model_name,
            baseline.model_version,
            finding.regression_type,
            finding.metric_name,
        )
        if finding.verdict == "pass":
            if existing is not None:
                existing.resolved_at = now
                existing.resolution_notes = (
                    f"Auto-resolved: {finding.metric_name} is back within its floors "
                    f"({finding.current_value:.4g} against baseline {finding.baseline_value:.4g})."
                )
                resolved.append(existing)
                events.record(
                    session,
                    event_type="quality.regression_resolved",
                    actor=SYSTEM,
                    customer_id=customer_id,
                    agent_id=existing.agent_id,
                    subject={"regression_id": str(existing.id), "metric_name": existing.metric_name},
                    before={"resolved": False},
                    after={"resolved": True},
                    extra={"notes": existing.resolution_notes},
                )
            continue
        evidence = {
            "test": finding.test,
            "statistic": finding.statistic,
            "p_value": finding.p_value,
            "p_value_adjusted": finding.p_value_adjusted,
            "alpha": settings.alpha,
            "ci95": list(finding.ci95) if finding.ci95 else None,
            "floors": finding.floors,
            "floor_ratio": finding.floor_ratio,
            "delta": finding.delta,
            "window": report.window,
            "affected_requests": affected,
            "last_detected_at": now.isoformat(),
        }
        assert finding.severity is not None
        assert finding.baseline_value is not None
        assert finding.current_value is not None
        values = {
            "baseline_id": baseline.id,
            "severity": finding.severity,
            "baseline_value": finding.baseline_value,
            "current_value": finding.current_value,
            "delta_percent": finding.delta_percent or 0.0,
            "sample_size": finding.sample_size,
        }
        if existing is None:
            regression = QualityRegression(
                agent_id=baseline.agent_id,
                customer_id=customer_id,
                model_name=baseline.model_name,
                model_version=baseline.model_version,
                regression_type=finding.regression_type,
                metric_name=finding.metric_name,
                detected_at=now,
                action_taken=RegressionAction.ALERT_ONLY,
                metadata_={**evidence, "detections": 1},
                **values,
            )
            session.add(regression)
            session.flush()
            event_type = "quality.regression_detected"
        else:
            regression = existing
            for field, value in values.items():
                setattr(regression, field, value)
            regression.metadata_ = {
                **regression.metadata_,
                **evidence,
                "detections": int(regression.metadata_.get("detections", 1)) + 1,
            }
            event_type = "quality.regression_updated"
        detected.append(regression)
        events.record(
            session,
            event_type=event_type,
            actor=principal,
            customer_id=customer_id,
            agent_id=regression.agent_id,
            severity=EVENT_SEVERITY[finding.severity],
            subject={
                "regression_id": str(regression.id),
                "model_name": baseline.model_name,
                "model_version": baseline.model_version,
                "metric_name": finding.metric_name,
            },
            after={
                "severity": str(finding.severity),
                "baseline_value": finding.baseline_value,
                "current_value": finding.current_value,
                "p_value_adjusted": finding.p_value_adjusted,
            },
        )
    rolled_back = _act(session, customer_id, detected, rows, settings, rollback) if detected else None
    session.flush()
    return report.model_copy(
        update={
            "regressions": [quality_schemas.Regression.model_validate(r) for r in detected],
            "resolved": [quality_schemas.Regression.model_validate(r) for r in resolved],
            "rolled_back_optimization_id": rolled_back,
        }
    )


def _act(
    session: Session,
    customer_id: uuid.UUID,
    regressions: list[QualityRegression],
    rows: repository.WindowRows,
    settings: QualitySettings,
    rollback: Rollback,
) -> uuid.UUID | None:
    """Apply the policy per regression; at most one rollback per detection, of the change in effect."""
    wants_rollback = [
        r
        for r in regressions
        if settings.policy[r.severity] is RegressionAction.ROLLBACK_TRIGGERED
        and r.action_taken is not RegressionAction.ROLLBACK_TRIGGERED
    ]
    for regression in regressions:
        action = settings.policy[regression.severity]
        if action is not RegressionAction.ROLLBACK_TRIGGERED and regression.action_taken is RegressionAction.ALERT_ONLY:
            regression.action_taken = action
    if not wants_rollback:
        return None
    worst = max(wants_rollback, key=lambda r: SEVERITY_ORDER.index(r.severity))
    window_start = rows.first_at or _now()
    window_end = rows.last_at + timedelta(microseconds=1) if rows.last_at else _now()
    return rollback_if_attributable(session, customer_id, wants_rollback, worst, window_start, window_end, rollback)


def rollback_if_attributable(
    session: Session,
    customer_id: uuid.UUID,
    wants_rollback: list[QualityRegression],
    worst: QualityRegression,
    window_start: datetime,
    window_end: datetime,
    rollback: Rollback,
) -> uuid.UUID | None:
    """Roll back (with `rollback`) the optimization the window's evidence names; with none, the regressions go to
    manual review and list the optimizations active in the window (attribution before action)."""
    assert worst.model_name is not None
    assert worst.model_version is not None
    found = attribute(session, customer_id, worst.model_name, worst.model_version, window_start, window_end)
    optimization = found.optimization
    if optimization is None:
        for regression in wants_rollback:
            regression.action_taken = RegressionAction.MANUAL_REVIEW
            regression.metadata_ = {
                **regression.metadata_,
                "action_note": (
                    "rollback wanted, but no change is attributable: no executing or completed optimization is "
                    "named by the window's records (metadata.optimization_id) or ran on their instances "
                    "(metadata.instance_id); a person reviews the optimizations active in the window"
                ),
                "active_optimizations": found.active,
            }
        return None
    reason = (
        f"Quality regression: {worst.metric_name} of {worst.model_name} {worst.model_version} "
        f"{worst.current_value:.4g} against baseline {worst.baseline_value:.4g} ({worst.severity})."
    )
    rollback(session, SYSTEM, optimization.id, reason)
    for regression in wants_rollback:
        regression.action_taken = RegressionAction.ROLLBACK_TRIGGERED
        regression.metadata_ = {
            **regression.metadata_,
            "rolled_back_optimization_id": str(optimization.id),
            "rolled_back_at": _now().isoformat(),
            "attribution": found.evidence,
        }
    events.record(
        session,
        event_type="quality.rollback_triggered",
        actor=SYSTEM,
        customer_id=customer_id,
        agent_id=worst.agent_id,
        severity=EventSeverity.CRITICAL,
        subject={"optimization_id": str(optimization.id), "regression_id": str(worst.id)},
        extra={"reason": reason, "regressions": [str(r.id) for r in wants_rollback], "attribution": found.evidence},
    )
    return optimization.id
