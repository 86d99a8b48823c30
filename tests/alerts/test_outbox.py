"""The outbox: alerts are written with their events, filtered by route, and grouped into one alert per incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.events import service as events
from optiinfra.models import (
    AgentStatus,
    AlertOutbox,
    AlertRoute,
    Customer,
    EventSeverity,
    QualityBaseline,
    QualityRegression,
    RegressionSeverity,
)
from tests.factories import assign, make_agent, make_customer, make_quality_baseline, make_quality_regression

SYSTEM = Principal.system("quality")


def make_route(session: Session, customer: Customer, **overrides: Any) -> AlertRoute:
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "name": "on-call",
        "destination": "webhook",
        "url": "https://hooks.example.com/optiinfra",
        "signing_secret": "whsec_test_secret_0123456789",
    }
    route = AlertRoute(**{**values, **overrides})
    session.add(route)
    session.flush()
    return route


def alerts_of(session: Session, route: AlertRoute) -> list[AlertOutbox]:
    return list(
        session.scalars(select(AlertOutbox).where(AlertOutbox.route_id == route.id).order_by(AlertOutbox.created_at))
    )


def regression_of(session: Session, baseline: QualityBaseline, **overrides: Any) -> QualityRegression:
    """A regression of the baseline's model version (as the monitoring opens them)."""
    values = {"model_name": baseline.model_name, "model_version": baseline.model_version, **overrides}
    return make_quality_regression(session, baseline, **values)


def regression_event(session: Session, regression: QualityRegression, event_type: str) -> None:
    """The event the monitoring writes when it opens, updates or resolves a regression."""
    if event_type == "quality.regression_resolved":
        regression.resolved_at = datetime.now(UTC)
    session.flush()
    events.record(
        session,
        event_type=event_type,
        actor=SYSTEM,
        customer_id=regression.customer_id,
        agent_id=regression.agent_id,
        subject={"regression_id": str(regression.id), "metric_name": regression.metric_name},
        after={"severity": str(regression.severity)},
    )


def test_an_alert_and_its_job_are_written_in_the_events_transaction(session: Session) -> None:
    baseline = make_quality_baseline(session)
    customer = session.get(Customer, baseline.customer_id)
    assert customer is not None
    route = make_route(session, customer)
    jobs = text("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'alerts' AND args->>'outbox_id' = :id")

    savepoint = session.begin_nested()
    regression = regression_of(session, baseline)
    regression_event(session, regression, "quality.regression_detected")
    [alert] = alerts_of(session, route)
    assert session.scalar(jobs, {"id": str(alert.id)}) == 1
    savepoint.rollback()  # the event's transaction fails: neither the alert nor its job remain

    assert alerts_of(session, route) == []
    assert session.scalar(jobs, {"id": str(alert.id)}) == 0


def test_an_incident_is_one_alert_opened_one_escalation_per_rise_and_one_resolution(session: Session) -> None:
    baseline = make_quality_baseline(session)
    customer = session.get(Customer, baseline.customer_id)
    assert customer is not None
    route = make_route(session, customer, throttle_seconds=600)

    # Three metrics of one model version flag in the same pass, then again at every pass.
    first = regression_of(session, baseline, severity=RegressionSeverity.MEDIUM)
    regression_event(session, first, "quality.regression_detected")
    second = regression_of(session, baseline, metric_name="factuality_score")
    regression_event(session, second, "quality.regression_detected")
    third = regression_of(session, baseline, metric_name="hallucination_rate")
    regression_event(session, third, "quality.regression_detected")
    for _ in range(5):
        for regression in (first, second, third):
            regression_event(session, regression, "quality.regression_updated")

    [opened] = alerts_of(session, route)
    assert opened.kind == "incident.opened"
    assert opened.severity is EventSeverity.ERROR  # the worst of the three (high)
    assert {line["metric_name"] for line in opened.payload["incident"]["regressions"]} == {
        "overall_quality_score",
        "factuality_score",
        "hallucination_rate",
    }

    opened.status, opened.attempts = "delivered", 1  # told
    session.flush()
    for _ in range(3):
        regression_event(session, first, "quality.regression_updated")  # no rise: nothing to tell
    assert len(alerts_of(session, route)) == 1

    first.severity = RegressionSeverity.CRITICAL
    regression_event(session, first, "quality.regression_updated")
    second.severity = RegressionSeverity.CRITICAL
    regression_event(session, second, "quality.regression_updated")
    [_, escalated] = alerts_of(session, route)
    assert (escalated.kind, escalated.severity, escalated.group_key) == (
        "incident.escalated",
        EventSeverity.CRITICAL,
        opened.group_key,
    )
    # Throttled: no sooner than throttle_seconds after the incident's previous alert.
    assert escalated.next_attempt_at >= opened.created_at + timedelta(seconds=600)

    regression_event(session, first, "quality.regression_resolved")
    regression_event(session, second, "quality.regression_resolved")
    assert len(alerts_of(session, route)) == 2  # one metric is still flagged: the incident goes on
    regression_event(session, third, "quality.regression_resolved")

    rows = alerts_of(session, route)
    assert [(row.kind, row.status) for row in rows] == [
        ("incident.opened", "delivered"),
        ("incident.escalated", "superseded"),  # the update had not gone out: moot now
        ("incident.resolved", "pending"),
    ]
    assert rows[2].group_key == opened.group_key

    # A new regression of the version later is a new incident.
    fourth = regression_of(session, baseline, metric_name="latency_p95")
    regression_event(session, fourth, "quality.regression_detected")
    assert alerts_of(session, route)[-1].kind == "incident.opened"
    assert alerts_of(session, route)[-1].group_key != opened.group_key


def test_routes_filter_by_kind_severity_and_model_and_other_tenants_hear_nothing(session: Session) -> None:
    baseline = make_quality_baseline(session, model_name="gpt-4o")
    customer = session.get(Customer, baseline.customer_id)
    assert customer is not None
    everything = make_route(session, customer)
    severe_only = make_route(session, customer, min_severity=EventSeverity.CRITICAL)
    other_model = make_route(session, customer, model_names=["llama-3"])
    agents_only = make_route(session, customer, event_kinds=["agent.failed"])
    disabled = make_route(session, customer, enabled=False)
    stranger = make_route(session, make_customer(session))

    regression = regression_of(session, baseline, severity=RegressionSeverity.HIGH)
    regression_event(session, regression, "quality.regression_detected")

    assert [a.kind for a in alerts_of(session, everything)] == ["incident.opened"]
    for route in (severe_only, other_model, agents_only, disabled, stranger):
        assert alerts_of(session, route) == []

    # The route for critical alerts hears of the incident once it becomes critical, as an opening for it.
    regression.severity = RegressionSeverity.CRITICAL
    regression_event(session, regression, "quality.regression_updated")
    assert [a.kind for a in alerts_of(session, severe_only)] == ["incident.opened"]


def test_agent_failure_alerts_the_customers_it_serves(session: Session) -> None:
    served, unserved = make_customer(session), make_customer(session)
    agent = make_agent(session, status=AgentStatus.DEGRADED)
    assign(session, agent, served)
    served_route, unserved_route = make_route(session, served), make_route(session, unserved)

    events.record(
        session,
        event_type="agent.status_changed",
        actor=Principal.system("health"),
        customer_id=None,
        agent_id=agent.id,
        severity=EventSeverity.ERROR,
        subject={"agent_id": str(agent.id), "type": "cost", "name": agent.name},
        before={"status": "degraded"},
        after={"status": "failed"},
        extra={"reason": "no heartbeat for 600 s"},
    )

    [alert] = alerts_of(session, served_route)
    assert (alert.kind, alert.severity) == ("agent.failed", EventSeverity.ERROR)
    assert alert.payload["text"] == "no heartbeat for 600 s"
    assert alerts_of(session, unserved_route) == []
