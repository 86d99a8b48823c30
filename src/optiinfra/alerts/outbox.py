"""Alerts written with the events they report: `on_event` runs inside `events.record`, in the event's transaction.

For every event that alerts (see `KINDS`), each enabled route of the customer whose filters accept it gets one
outbox row and one queued delivery job, in the same transaction: the alert exists exactly when the event does.

Quality incidents are grouped per model version: the first open regression of a version opens the incident (one
`incident.opened` alert); further metrics and updates join it; a rise of its severity above what the route was
last told is one `incident.escalated` alert, sent no sooner than `throttle_seconds` after the previous alert of the
incident (updates arriving meanwhile are merged into the waiting alert); when the version's last open regression
resolves, one `incident.resolved` alert. So a route hears of an incident a handful of times, never per metric per
pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from procrastinate import jobs as procrastinate_jobs
from procrastinate.manager import JobManager
from procrastinate.sync_psycopg_connector import SyncPsycopgConnector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optiinfra.alerts.schemas import KINDS as KINDS  # re-exported: the kinds live with the route schema
from optiinfra.alerts.settings import delivery_settings
from optiinfra.models import (
    AgentCustomer,
    AlertOutbox,
    AlertRoute,
    Event,
    EventSeverity,
    QualityRegression,
    RegressionSeverity,
)

TEST_KIND = "test"
SEVERITY_RANK = {EventSeverity.INFO: 0, EventSeverity.WARNING: 1, EventSeverity.ERROR: 2, EventSeverity.CRITICAL: 3}
REGRESSION_SEVERITY = {
    RegressionSeverity.LOW: EventSeverity.INFO,
    RegressionSeverity.MEDIUM: EventSeverity.WARNING,
    RegressionSeverity.HIGH: EventSeverity.ERROR,
    RegressionSeverity.CRITICAL: EventSeverity.CRITICAL,
}

ALERT_QUEUE = "alerts"
DELIVER_TASK = "optiinfra.deliver_alert"
# Used only with the caller's connection (never opens a pool of its own).
_manager = JobManager(SyncPsycopgConnector())


def enqueue(session: Session, outbox_id: uuid.UUID, at: datetime | None = None) -> None:
    """Queue the delivery job of an outbox row in the session's transaction (committed with it).

    The job takes no procrastinate lock: the row's claim (`delivery`) already lets one attempt run at a time, and a
    lock would hold a new job back behind the job of a killed worker until that one is declared stalled."""
    connection = session.connection().connection.driver_connection
    job = procrastinate_jobs.Job(
        id=None,
        queue=ALERT_QUEUE,
        lock=None,
        queueing_lock=None,
        task_name=DELIVER_TASK,
        task_kwargs={"outbox_id": str(outbox_id)},
        scheduled_at=at,
    )
    _manager.defer_job(job, connection=connection)


def _now() -> datetime:
    return datetime.now(UTC)


def worst(severities: Sequence[EventSeverity]) -> EventSeverity:
    return max(severities, key=lambda severity: SEVERITY_RANK[severity])


def accepts(route: AlertRoute, kind: str, severity: EventSeverity, model_name: str | None) -> bool:
    """The route's filters: kinds (none listed: all), minimum severity, models (none listed: all; an alert about no
    model passes)."""
    if route.event_kinds and kind not in route.event_kinds:
        return False
    if SEVERITY_RANK[severity] < SEVERITY_RANK[route.min_severity]:
        return False
    return not (route.model_names and model_name is not None and model_name not in route.model_names)


def add_alert(
    session: Session,
    route: AlertRoute,
    *,
    kind: str,
    severity: EventSeverity,
    subject_key: str,
    group_key: str,
    payload: dict[str, Any],
    event: Event | None = None,
    at: datetime | None = None,
) -> AlertOutbox:
    """One outbox row for the route and its delivery job, in the caller's transaction."""
    row = AlertOutbox(
        id=uuid.uuid4(),
        route_id=route.id,
        customer_id=route.customer_id,
        event_id=event.id if event is not None else None,
        kind=kind,
        severity=severity,
        subject_key=subject_key[:600],
        group_key=group_key[:200],
        payload={"kind": kind, "severity": str(severity), "customer_id": str(route.customer_id), **payload},
        status="pending",
        attempts=0,
        max_attempts=delivery_settings().max_attempts,
        next_attempt_at=at or _now(),
        # clock_timestamp(): alerts written in one transaction keep their order (the incident rule reads it).
        created_at=func.clock_timestamp(),
    )
    session.add(row)
    session.flush()
    enqueue(session, row.id, at if at is not None and at > _now() else None)
    return row


def _routes(session: Session, customer_ids: Sequence[uuid.UUID]) -> list[AlertRoute]:
    if not customer_ids:
        return []
    return list(
        session.scalars(
            select(AlertRoute)
            .where(AlertRoute.customer_id.in_(customer_ids), AlertRoute.enabled.is_(True))
            .order_by(AlertRoute.created_at, AlertRoute.id)
        )
    )


# --- quality incidents ------------------------------------------------------------------------------------------


def _regression_line(regression: QualityRegression) -> dict[str, Any]:
    return {
        "regression_id": str(regression.id),
        "metric_name": regression.metric_name,
        "regression_type": str(regression.regression_type),
        "severity": str(regression.severity),
        "baseline_value": regression.baseline_value,
        "current_value": regression.current_value,
        "delta_percent": regression.delta_percent,
        "detected_at": regression.detected_at.isoformat() if regression.detected_at else None,
        "resolved_at": regression.resolved_at.isoformat() if regression.resolved_at else None,
    }


def _incident_payload(
    kind: str,
    severity: EventSeverity,
    model_name: str,
    model_version: str,
    group_key: str,
    regressions: Sequence[QualityRegression],
) -> dict[str, Any]:
    verb = kind.split(".", 1)[1]
    lines = [
        f"{r.metric_name}: {r.current_value:.4g} against baseline {r.baseline_value:.4g} "
        f"({r.delta_percent:+.1f} %), severity {r.severity}" + (" (resolved)" if r.resolved_at else "")
        for r in regressions
    ]
    return {
        "title": f"Quality incident {verb}: {model_name} {model_version} ({severity})",
        "text": "\n".join(lines) or "No regression of this model version is open any more.",
        "incident": {
            "group_key": group_key,
            "model_name": model_name,
            "model_version": model_version,
            "regressions": [_regression_line(r) for r in regressions],
        },
        "model_name": model_name,
        "occurred_at": _now().isoformat(),
    }


def _latest_incident_alert(session: Session, route: AlertRoute, subject_key: str) -> AlertOutbox | None:
    return session.scalars(
        select(AlertOutbox)
        .where(
            AlertOutbox.route_id == route.id,
            AlertOutbox.subject_key == subject_key,
            AlertOutbox.kind.like("incident.%"),
            AlertOutbox.status != "superseded",
        )
        .order_by(AlertOutbox.created_at.desc(), AlertOutbox.id.desc())
        .limit(1)
    ).first()


def _group_rows(session: Session, route: AlertRoute, group_key: str) -> list[AlertOutbox]:
    return list(
        session.scalars(
            select(AlertOutbox)
            .where(
                AlertOutbox.route_id == route.id,
                AlertOutbox.group_key == group_key,
                AlertOutbox.status != "superseded",
            )
            .order_by(AlertOutbox.created_at)
            .with_for_update()
        )
    )


def _incident(session: Session, event: Event) -> None:
    subject = event.data.get("subject") or {}
    try:
        regression_id = uuid.UUID(str(subject.get("regression_id")))
    except ValueError:
        return
    regression = session.get(QualityRegression, regression_id)
    if regression is None or regression.model_name is None or regression.model_version is None:
        return
    routes = _routes(session, [regression.customer_id])
    if not routes:
        return
    model_name, model_version = regression.model_name, regression.model_version
    subject_key = f"quality:{regression.customer_id}:{model_name}:{model_version}"
    # One transaction at a time decides about a model version's incident (the monitor and a person may both act).
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(subject_key))))
    open_regressions = list(
        session.scalars(
            select(QualityRegression)
            .where(
                QualityRegression.customer_id == regression.customer_id,
                QualityRegression.model_name == model_name,
                QualityRegression.model_version == model_version,
                QualityRegression.resolved_at.is_(None),
            )
            .order_by(QualityRegression.detected_at, QualityRegression.id)
        )
    )
    severity = worst([REGRESSION_SEVERITY[r.severity] for r in open_regressions]) if open_regressions else None
    for route in routes:
        latest = _latest_incident_alert(session, route, subject_key)
        ongoing = latest is not None and latest.kind != "incident.resolved"
        if severity is not None and not ongoing:
            if accepts(route, "incident.opened", severity, model_name):
                group_key = f"incident:{open_regressions[0].id}"
                payload = _incident_payload(
                    "incident.opened", severity, model_name, model_version, group_key, open_regressions
                )
                add_alert(
                    session,
                    route,
                    kind="incident.opened",
                    severity=severity,
                    subject_key=subject_key,
                    group_key=group_key,
                    payload=payload,
                    event=event,
                )
            continue
        if latest is None or not ongoing:
            continue
        rows = _group_rows(session, route, latest.group_key)
        untried = [row for row in rows if row.status == "pending" and row.attempts == 0]
        told = worst([row.severity for row in rows])
        if severity is not None:
            if untried:  # not sent yet: it will carry the incident as it is now
                waiting = untried[-1]
                waiting.severity = worst([waiting.severity, severity])
                waiting.payload = {
                    **waiting.payload,
                    **_incident_payload(
                        waiting.kind, waiting.severity, model_name, model_version, latest.group_key, open_regressions
                    ),
                    "severity": str(waiting.severity),
                }
            elif SEVERITY_RANK[severity] > SEVERITY_RANK[told] and accepts(
                route, "incident.escalated", severity, model_name
            ):
                previous = max(row.created_at for row in rows)
                at = max(_now(), previous + timedelta(seconds=route.throttle_seconds))
                add_alert(
                    session,
                    route,
                    kind="incident.escalated",
                    severity=severity,
                    subject_key=subject_key,
                    group_key=latest.group_key,
                    payload=_incident_payload(
                        "incident.escalated", severity, model_name, model_version, latest.group_key, open_regressions
                    ),
                    event=event,
                    at=at,
                )
            continue
        if event.event_type != "quality.regression_resolved":
            continue
        for row in untried:
            if row.kind == "incident.escalated":
                row.status = "superseded"  # the incident is over: its pending update is moot
        if not route.event_kinds or "incident.resolved" in route.event_kinds:
            grouped = [
                r for r in _resolved_of_group(session, regression, latest.group_key, rows) if r.resolved_at is not None
            ]
            add_alert(
                session,
                route,
                kind="incident.resolved",
                severity=told,
                subject_key=subject_key,
                group_key=latest.group_key,
                payload=_incident_payload(
                    "incident.resolved", told, model_name, model_version, latest.group_key, grouped
                ),
                event=event,
            )


def _resolved_of_group(
    session: Session, regression: QualityRegression, group_key: str, rows: Sequence[AlertOutbox]
) -> list[QualityRegression]:
    """The regressions the incident's alerts named (the last resolved one included)."""
    ids: set[uuid.UUID] = {regression.id}
    for row in rows:
        for line in (row.payload.get("incident") or {}).get("regressions", []):
            ids.add(uuid.UUID(line["regression_id"]))
    return list(
        session.scalars(
            select(QualityRegression)
            .where(QualityRegression.id.in_(ids))
            .order_by(QualityRegression.detected_at, QualityRegression.id)
        )
    )


# --- single events ----------------------------------------------------------------------------------------------


def _single(
    session: Session,
    event: Event,
    kind: str,
    severity: EventSeverity,
    customer_ids: Sequence[uuid.UUID],
    *,
    title: str,
    text: str,
    model_name: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    for route in _routes(session, customer_ids):
        if not accepts(route, kind, severity, model_name):
            continue
        add_alert(
            session,
            route,
            kind=kind,
            severity=severity,
            subject_key=f"{kind}:{event.id}",
            group_key=f"event:{event.id}",
            payload={
                "title": title,
                "text": text,
                "model_name": model_name,
                "occurred_at": _now().isoformat(),
                "event": {"event_id": str(event.id), "event_type": event.event_type},
                "details": details or {},
            },
            event=event,
        )


def _rollback(session: Session, event: Event) -> None:
    if event.customer_id is None:
        return
    subject = event.data.get("subject") or {}
    model_name = None
    regression_id = subject.get("regression_id")
    if regression_id:
        regression = session.get(QualityRegression, uuid.UUID(str(regression_id)))
        model_name = regression.model_name if regression is not None else None
    reason = str(event.data.get("reason") or "a quality regression")
    _single(
        session,
        event,
        "rollback.triggered",
        EventSeverity.CRITICAL,
        [event.customer_id],
        title=f"Rollback triggered: optimization {subject.get('optimization_id')}",
        text=reason,
        model_name=model_name,
        details={"optimization_id": subject.get("optimization_id"), "regression_id": regression_id},
    )


def _paused(session: Session, event: Event) -> None:
    if event.customer_id is None:
        return
    subject = event.data.get("subject") or {}
    workflow = subject.get("workflow") or "workflow"
    _single(
        session,
        event,
        "rollout.paused",
        EventSeverity.WARNING,
        [event.customer_id],
        title=f"{workflow} paused: a person must decide (resume or abort)",
        text=str(event.data.get("reason") or "The run waits for a human decision."),
        details={
            "workflow_execution_id": subject.get("workflow_execution_id"),
            "workflow": workflow,
            "step": event.data.get("step"),
        },
    )


def _optimization(session: Session, event: Event) -> None:
    if event.customer_id is None:
        return
    subject = event.data.get("subject") or {}
    outcome = event.event_type.split(".", 1)[1]
    failed = outcome == "failed"
    _single(
        session,
        event,
        f"optimization.{outcome}",
        EventSeverity.ERROR if failed else EventSeverity.INFO,
        [event.customer_id],
        title=f"Optimization {outcome}: {subject.get('optimization_id')}",
        text=str(event.data.get("reason") or event.data.get("error") or f"The optimization {outcome}."),
        details={
            "optimization_id": subject.get("optimization_id"),
            "recommendation_id": subject.get("recommendation_id"),
        },
    )


def _agent(session: Session, event: Event) -> None:
    if (event.data.get("after") or {}).get("status") != "failed" or event.agent_id is None:
        return
    subject = event.data.get("subject") or {}
    customers = list(session.scalars(select(AgentCustomer.customer_id).where(AgentCustomer.agent_id == event.agent_id)))
    _single(
        session,
        event,
        "agent.failed",
        EventSeverity.ERROR,
        customers,
        title=f"Agent failed: {subject.get('name') or event.agent_id} ({subject.get('type')})",
        text=str(event.data.get("reason") or "The agent is failed."),
        details={"agent_id": str(event.agent_id)},
    )


_HANDLERS: dict[str, Callable[[Session, Event], None]] = {
    "quality.regression_detected": _incident,
    "quality.regression_updated": _incident,
    "quality.regression_resolved": _incident,
    "quality.regression_reopened": _incident,  # the same incident back within the recurrence horizon
    "quality.rollback_triggered": _rollback,
    "workflow.paused": _paused,
    "optimization.completed": _optimization,
    "optimization.failed": _optimization,
    "agent.status_changed": _agent,
}


def on_event(session: Session, event: Event) -> None:
    """Write the alerts an event calls for (nothing for most events), in the event's transaction."""
    handler = _HANDLERS.get(event.event_type)
    if handler is not None:
        handler(session, event)
