"""Scaling decision (resource agent, `scaling_decision`): scale up, down or not at all, from utilization history.

The rule, with hysteresis so noisy data does not flap the fleet:
- scale **up** when fleet GPU utilization stayed above `up_threshold` (80 %) for the last `sustain` buckets (3 x
  5 minutes); scale **down** when it stayed below `down_threshold` (30 %) for as long; otherwise do nothing. The gap
  between the two thresholds, and the need for consecutive buckets, are the hysteresis.
- no change within `cooldown` (15 minutes) of the last successful scaling event;
- one instance at a time, within [`min_instances`, `max_instances`].
Adding capacity protects availability and needs no approval (a `scale_up` event for the resource agent to apply).
Removing capacity saves money but risks latency, so it needs approval: the workflow records a `scale_down` event
awaiting approval and a recommendation for the customer.

Prices: the fleet's instance types and purchase options (from the Prometheus collector's labels) are priced with
the shipped catalog. A scale-down's estimated savings are the hourly price of the cheapest machine in the fleet (spot
or on-demand, as it runs) x 730 h: what removing any one machine saves at least. A scale-up records what the
added machine costs per month, priced the same way with the most common instance type.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.events import service as events
from optiinfra.models import (
    Agent,
    ArtifactType,
    RecommendationPriority,
    ScalingEvent,
    ScalingEventType,
    WorkflowType,
)
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows import repository
from optiinfra.workflows.catalog import PriceCatalog, load_catalog
from optiinfra.workflows.engine import StepContext, StepDefinition, WorkflowDefinition


@dataclass(frozen=True)
class ScalingPolicy:
    up_threshold: float = 80.0
    down_threshold: float = 30.0
    sustain: int = 3
    cooldown: timedelta = timedelta(minutes=15)
    min_instances: int = 1
    max_instances: int = 16


def fleet_prices(fleet: list[tuple[str, str | None, str | None]], catalog: PriceCatalog) -> dict[str, Any]:
    """Pure: monthly price of one machine removed (the cheapest in the fleet) and one added (the most common
    type, at its most common purchase option); None where the catalog does not know the type."""
    priced = []
    for _instance, instance_type, purchase_option in fleet:
        entry = catalog.instance_types.get(instance_type or "")
        if entry is not None:
            hourly = entry.spot_hourly if purchase_option == "spot" else entry.on_demand_hourly
            priced.append((hourly, instance_type, purchase_option or "on_demand"))
    if not priced:
        return {"removed_monthly": None, "added_monthly": None, "formula": None}
    cheapest = min(priced)
    kinds = [(instance_type, option) for _, instance_type, option in priced]
    common = max(set(kinds), key=kinds.count)
    added = next(hourly for hourly, instance_type, option in priced if (instance_type, option) == common)
    return {
        "removed_monthly": round(cheapest[0] * catalog.hours_per_month, 2),
        "removed_type": f"{cheapest[1]} ({cheapest[2]})",
        "added_monthly": round(added * catalog.hours_per_month, 2),
        "added_type": f"{common[0]} ({common[1]})",
        "formula": f"hourly price x {catalog.hours_per_month:g} h/month",
    }


@dataclass(frozen=True)
class Decision:
    action: str  # "scale_up", "scale_down" or "none"
    reason: str
    current_instances: int
    target_instances: int


def decide(
    series: list[float],
    current_instances: int,
    policy: ScalingPolicy,
    *,
    last_scaled_at: datetime | None,
    now: datetime,
) -> Decision:
    """Pure: the decision for a utilization series (percent per bucket, oldest first)."""
    if last_scaled_at is not None and now - last_scaled_at < policy.cooldown:
        return Decision(
            "none",
            f"cooling down after the scaling at {last_scaled_at.isoformat()}",
            current_instances,
            current_instances,
        )
    if len(series) < policy.sustain:
        return Decision(
            "none",
            f"only {len(series)} buckets of history (needs {policy.sustain})",
            current_instances,
            current_instances,
        )
    recent = series[-policy.sustain :]
    if all(value > policy.up_threshold for value in recent):
        if current_instances >= policy.max_instances:
            return Decision(
                "none", f"already at the maximum of {policy.max_instances}", current_instances, current_instances
            )
        return Decision(
            "scale_up",
            f"utilization above {policy.up_threshold:g} % for {policy.sustain} buckets "
            f"({', '.join(f'{v:.0f}' for v in recent)})",
            current_instances,
            current_instances + 1,
        )
    if all(value < policy.down_threshold for value in recent):
        if current_instances <= policy.min_instances:
            return Decision(
                "none", f"already at the minimum of {policy.min_instances}", current_instances, current_instances
            )
        return Decision(
            "scale_down",
            f"utilization below {policy.down_threshold:g} % for {policy.sustain} buckets "
            f"({', '.join(f'{v:.0f}' for v in recent)})",
            current_instances,
            current_instances - 1,
        )
    return Decision("none", "utilization within the band, or not sustained", current_instances, current_instances)


def _policy(context: StepContext) -> ScalingPolicy:
    raw = dict(context.input.get("policy") or {})
    if "cooldown_minutes" in raw:
        raw["cooldown"] = timedelta(minutes=float(raw.pop("cooldown_minutes")))
    return ScalingPolicy(**raw)


def _read(context: StepContext) -> dict[str, Any]:
    window = timedelta(minutes=float(context.input.get("window_minutes", 60)))
    bucket = timedelta(minutes=float(context.input.get("bucket_minutes", 5)))
    since = datetime.now(UTC) - window
    with unit_of_work(context.factory) as session:
        series = repository.fleet_utilization(session, context.customer_id, since, bucket)
        size = repository.fleet_size(session, context.customer_id, since)
        fleet = repository.fleet_instances(session, context.customer_id, since)
        last = repository.last_scaling(session, context.customer_id)
        last_at = last.executed_at if last else None
        if last is not None and last.after_state.get("instance_count"):
            size = int(last.after_state["instance_count"])
    return {
        "series": [round(v, 2) for v in series],
        "instances": int(context.input.get("current_instances") or size),
        "last_scaled_at": last_at.isoformat() if last_at else None,
        "prices": fleet_prices(fleet, load_catalog()),
    }


def _decide(context: StepContext) -> dict[str, Any]:
    data = context.outputs["read_utilization"]
    last = data["last_scaled_at"]
    decision = decide(
        data["series"],
        data["instances"],
        _policy(context),
        last_scaled_at=datetime.fromisoformat(last) if last else None,
        now=datetime.now(UTC),
    )
    context.write_artifact(
        "scaling-decision.json",
        ArtifactType.METRICS,
        json.dumps({"series": data["series"], "decision": asdict(decision)}, indent=2),
        "application/json",
    )
    return asdict(decision)


def _record(context: StepContext) -> dict[str, Any]:
    decision = context.outputs["decide"]
    if decision["action"] == "none":
        return {"scaling_event_id": None, "recommendation_id": None}
    series = context.outputs["read_utilization"]["series"]
    average = round(sum(series[-3:]) / len(series[-3:]), 2)
    before = {"instance_count": decision["current_instances"], "avg_utilization": average}
    after = {"instance_count": decision["target_instances"]}
    now = datetime.now(UTC)
    scale_up = decision["action"] == "scale_up"
    prices = context.outputs["read_utilization"].get("prices") or {}
    if scale_up and prices.get("added_monthly") is not None:
        after["added_monthly_cost"] = prices["added_monthly"]
    with unit_of_work(context.factory) as session:
        agent = session.get(Agent, context.agent_id)
        assert agent is not None
        principal = Principal.for_agent(agent)
        recommendation_id = None
        if not scale_up:
            recommendation = recommendations.create_recommendation(
                session,
                principal,
                rec_schemas.RecommendationCreate(
                    customer_id=context.customer_id,
                    type="scale_down",
                    title=f"Scale the GPU fleet from {before['instance_count']} to {after['instance_count']}",
                    description=decision["reason"]
                    + (
                        f"; removing the cheapest machine, a {prices['removed_type']}, saves about "
                        f"${prices['removed_monthly']:,.2f} per month ({prices['formula']})"
                        if prices.get("removed_monthly") is not None
                        else ""
                    ),
                    confidence_score=0.8,
                    priority=RecommendationPriority.MEDIUM,
                    estimated_savings=Decimal(str(prices["removed_monthly"])).quantize(Decimal("0.01"))
                    if prices.get("removed_monthly") is not None
                    else None,
                    data={
                        "before": before,
                        "after": after,
                        "prices": prices,
                        "workflow_execution_id": str(context.execution_id),
                    },
                ),
            )
            recommendation_id = str(recommendation.id)
        event = ScalingEvent(
            agent_id=context.agent_id,
            customer_id=context.customer_id,
            workflow_execution_id=context.execution_id,
            event_type=ScalingEventType.SCALE_UP if scale_up else ScalingEventType.SCALE_DOWN,
            trigger_reason=decision["reason"][:500],
            before_state=before,
            after_state=after,
            success=scale_up,
            executed_at=now,
            completed_at=now if scale_up else None,
            metadata_={
                "status": "approved_automatically" if scale_up else "awaiting_approval",
                "recommendation_id": recommendation_id,
            },
        )
        session.add(event)
        session.flush()
        events.record(
            session,
            event_type=f"scaling.{decision['action']}",
            actor=principal,
            customer_id=context.customer_id,
            agent_id=context.agent_id,
            subject={"scaling_event_id": str(event.id)},
            before=before,
            after=after,
            extra={"reason": decision["reason"], "status": event.metadata_["status"]},
        )
        return {"scaling_event_id": str(event.id), "recommendation_id": recommendation_id}


SCALING = WorkflowDefinition(
    name="scaling_decision",
    workflow_type=WorkflowType.SCALING_DECISION,
    steps=(
        StepDefinition("read_utilization", _read, max_retries=2),
        StepDefinition("decide", _decide, max_retries=0),
        StepDefinition("record_decision", _record, max_retries=0),
    ),
)
