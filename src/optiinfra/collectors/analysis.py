"""Performance recommendations from the collected serving and GPU metrics, each with its evidence.

Two rules, run after every successful collection (thresholds in `Thresholds`):

- **scale up** (performance agent): over the last 30 minutes a model's vLLM KV cache stayed at or above 90 % in at
  least 80 % of the steps, or its waiting queue grew (the mean of the last third of the window is at least twice
  the mean of the first third, and at least one request). Estimate: the time a request now spends queued,
  W = L / λ by Little's law (L: mean requests waiting, λ: requests finished per second, both over the last third
  of the window), which another replica of the same size would mostly remove while arrivals stay below the added
  capacity; and what the replica costs: the instance type's hourly price (spot or on-demand, as the machine's
  purchase option) x 730 h.
- **GPU downsize** (cost agent): over the last 2 days (at least 90 % of the hours present) the 95th percentile of a
  machine's hourly GPU utilization stayed below 30 %. The GPUs needed at 60 % utilization are
  max(1, ceil(GPUs x p95 / 60)); the cheapest catalog instance type with at least that many GPUs that costs less is
  proposed. Savings per month = (current hourly price - new hourly price) x 730 h, at the machine's purchase option.

A rule that lacks evidence (too few steps, too few hours, an instance type the catalog does not know) recommends
nothing and says why in the collection report. A pending recommendation of the same kind for the same machine (and
model) is not made twice.
"""

from __future__ import annotations

import math
import statistics
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.collectors import queries
from optiinfra.db.engine import unit_of_work
from optiinfra.models import (
    Agent,
    AgentMetric,
    AgentType,
    Recommendation,
    RecommendationPriority,
    RecommendationStatus,
    ResourceMetric,
    ResourceType,
)
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.resources import repository as resource_repository
from optiinfra.workflows import repository as workflow_repository
from optiinfra.workflows.catalog import PriceCatalog, load_catalog

ORIGIN = workflow_repository.ORIGIN  # hourly buckets start on round hours


@dataclass(frozen=True)
class Thresholds:
    saturation_window: timedelta = timedelta(minutes=30)
    kv_saturated: float = 0.90
    kv_sustained_share: float = 0.80
    queue_growth: float = 2.0
    queue_min: float = 1.0
    min_points: int = 5
    idle_window: timedelta = timedelta(days=2)
    idle_p95: float = 30.0
    target_utilization: float = 60.0
    min_coverage: float = 0.9


def _thirds(values: list[float]) -> tuple[list[float], list[float]]:
    third = max(1, len(values) // 3)
    return values[:third], values[-third:]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def hourly_price(catalog: PriceCatalog, instance_type: str | None, purchase_option: str | None) -> float | None:
    price = catalog.instance_types.get(instance_type or "")
    if price is None:
        return None
    return price.spot_hourly if purchase_option == "spot" else price.on_demand_hourly


def scale_up_finding(
    kv_cache: list[float],
    waiting: list[float],
    finished_per_second: list[float],
    thresholds: Thresholds,
) -> dict[str, Any] | None:
    """Pure: why this model needs more capacity (and the queue-wait estimate), or None."""
    signals = []
    if len(kv_cache) >= thresholds.min_points:
        share = sum(v >= thresholds.kv_saturated for v in kv_cache) / len(kv_cache)
        if share >= thresholds.kv_sustained_share:
            signals.append(
                f"KV cache at or above {thresholds.kv_saturated:.0%} in {share:.0%} of the steps "
                f"(needs {thresholds.kv_sustained_share:.0%})"
            )
    growing = False
    first: list[float] = []
    last: list[float] = []
    if len(waiting) >= thresholds.min_points:
        first, last = _thirds(waiting)
        early, late = statistics.fmean(first), statistics.fmean(last)
        growing = late >= thresholds.queue_min and late >= thresholds.queue_growth * max(early, 0.5)
        if growing:
            signals.append(f"waiting requests grew from {early:.1f} to {late:.1f} on average")
    if not signals:
        return None
    queued = statistics.fmean(last) if last else 0.0
    _, recent_rate = _thirds(finished_per_second) if finished_per_second else ([], [])
    rate = statistics.fmean(recent_rate) if recent_rate else 0.0
    wait = queued / rate if rate > 0 else None
    return {
        "signals": signals,
        "mean_waiting_recent": round(queued, 3),
        "finished_per_second_recent": round(rate, 3),
        "queue_wait_seconds": round(wait, 3) if wait is not None else None,
        "latency_formula": "W = L / λ (Little's law): L = mean requests waiting, λ = requests finished per second, "
        "over the last third of the window",
    }


def downsize_finding(
    hourly: list[float],
    expected_hours: int,
    gpus: int,
    instance_type: str | None,
    purchase_option: str | None,
    catalog: PriceCatalog,
    thresholds: Thresholds,
) -> tuple[dict[str, Any] | None, str | None]:
    """Pure: the cheaper instance type for an under-used GPU machine, or (None, why not)."""
    coverage = len(hourly) / expected_hours if expected_hours else 0.0
    if coverage < thresholds.min_coverage:
        return None, f"only {len(hourly)} of {expected_hours} hours of GPU utilization"
    p95 = percentile(hourly, 95)
    if p95 >= thresholds.idle_p95:
        return None, None
    current = hourly_price(catalog, instance_type, purchase_option)
    if current is None:
        return None, f"instance type {instance_type!r} is not in the price catalog"
    needed = max(1, math.ceil(gpus * p95 / thresholds.target_utilization))
    options = sorted(
        (price, name)
        for name, entry in catalog.instance_types.items()
        if entry.gpus >= needed
        and (price := hourly_price(catalog, name, purchase_option)) is not None
        and price < current
    )
    if not options:
        return None, f"no catalog instance type with {needed} GPU(s) costs less than {instance_type}"
    new_price, new_type = options[0]
    monthly = (current - new_price) * catalog.hours_per_month
    return {
        "p95_utilization": round(p95, 2),
        "mean_utilization": round(statistics.fmean(hourly), 2),
        "hours": len(hourly),
        "coverage": round(coverage, 3),
        "gpus": gpus,
        "gpus_needed": needed,
        "current_type": instance_type,
        "current_hourly": current,
        "proposed_type": new_type,
        "proposed_hourly": new_price,
        "monthly_savings": round(monthly, 2),
        "needed_formula": f"max(1, ceil(GPUs x p95 / {thresholds.target_utilization:g}))",
        "savings_formula": f"(current_hourly - proposed_hourly) x {catalog.hours_per_month:g} h/month",
    }, None


# --- reading the collected numbers ------------------------------------------------------------------------------


def _serving_series(
    session: Session, agent_id: uuid.UUID, customer_id: uuid.UUID, since: datetime
) -> dict[tuple[str, str], dict[str, list[tuple[datetime, float]]]]:
    rows = session.execute(
        select(
            AgentMetric.tags["instance_id"].astext,
            AgentMetric.tags["model_name"].astext,
            AgentMetric.metric_name,
            AgentMetric.recorded_at,
            AgentMetric.metric_value,
        )
        .where(
            AgentMetric.agent_id == agent_id,
            AgentMetric.recorded_at >= since,
            AgentMetric.tags["customer_id"].astext == str(customer_id),
            AgentMetric.metric_name.in_(
                ["vllm.kv_cache_usage", "vllm.requests_waiting", "vllm.requests_finished_per_second"]
            ),
        )
        .order_by(AgentMetric.recorded_at)
    ).all()
    found: dict[tuple[str, str], dict[str, list[tuple[datetime, float]]]] = {}
    for instance, model, name, moment, value in rows:
        found.setdefault((instance or "", model or ""), {}).setdefault(name, []).append((moment, value))
    return found


def _instance_facts(session: Session, customer_id: uuid.UUID, since: datetime) -> dict[str, dict[str, Any]]:
    """Per instance: instance type, zone, purchase option, GPU count (latest) from the collected rows."""
    rows = session.execute(
        select(
            ResourceMetric.instance_id,
            func.max(ResourceMetric.metadata_["instance_type"].astext),
            func.max(ResourceMetric.metadata_["zone"].astext),
            func.max(ResourceMetric.metadata_["purchase_option"].astext),
            func.max(ResourceMetric.metric_value).filter(ResourceMetric.metric_name == "gpu_count"),
        )
        .where(ResourceMetric.customer_id == customer_id, ResourceMetric.timestamp >= since)
        .group_by(ResourceMetric.instance_id)
    ).all()
    return {
        row[0]: {"instance_type": row[1], "zone": row[2], "purchase_option": row[3], "gpus": row[4]} for row in rows
    }


def _hourly_gpu(session: Session, customer_id: uuid.UUID, since: datetime, until: datetime) -> dict[str, list[float]]:
    bucket = func.date_bin(literal(timedelta(hours=1)), ResourceMetric.timestamp, literal(ORIGIN))
    rows = session.execute(
        select(ResourceMetric.instance_id, bucket, func.avg(ResourceMetric.metric_value))
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.timestamp < until,
            ResourceMetric.resource_type == ResourceType.GPU,
            ResourceMetric.metric_name == "utilization",
        )
        .group_by(ResourceMetric.instance_id, bucket)
        .order_by(ResourceMetric.instance_id, bucket)
    ).all()
    found: dict[str, list[float]] = {}
    for instance, _bucket, average in rows:
        found.setdefault(instance, []).append(float(average))
    return found


def _pending(session: Session, customer_id: uuid.UUID, kind: str, instance: str, model: str | None) -> bool:
    statement = select(Recommendation.id).where(
        Recommendation.customer_id == customer_id,
        Recommendation.type == kind,
        Recommendation.status.in_([RecommendationStatus.PENDING, RecommendationStatus.APPROVED]),
        Recommendation.data["instance_id"].astext == instance,
    )
    if model is not None:
        statement = statement.where(Recommendation.data["model_name"].astext == model)
    return session.scalar(statement.limit(1)) is not None


def _per_minute(points: list[tuple[datetime, float]]) -> list[list[Any]]:
    """The evidence values: per-minute means (time, value), so a long window stays readable."""
    minutes: dict[datetime, list[float]] = {}
    for moment, value in points:
        minutes.setdefault(moment.replace(second=0, microsecond=0), []).append(value)
    return [[moment.isoformat(), round(statistics.fmean(values), 4)] for moment, values in minutes.items()]


def _agent(session: Session, customer_id: uuid.UUID, kind: AgentType) -> Principal | None:
    agent = workflow_repository.most_recent_agent(session, kind, customer_id)
    if agent is None:
        fallback = resource_repository.default_resource_agent(session, customer_id)
        agent = session.get(Agent, fallback) if fallback is not None else None
    return Principal.for_agent(agent) if agent is not None else None


def _promql(key: str, labels: queries.LabelMapping, step: int, resource_type: ResourceType | None = None) -> str:
    spec = next(
        s for s in queries.QUERIES if s.key == key and (resource_type is None or s.resource_type == resource_type)
    )
    return queries.render(spec, labels, step)


def recommend(
    factory: sessionmaker[Session],
    customer_id: uuid.UUID,
    *,
    now: datetime,
    labels: queries.LabelMapping,
    step: int,
    thresholds: Thresholds = Thresholds(),
    catalog: PriceCatalog | None = None,
) -> list[dict[str, Any]]:
    """Look at what was collected for the customer; create the recommendations the rules call for. Returns one
    entry per finding: the recommendation made, or why none was."""
    catalog = catalog or load_catalog()
    outcomes: list[dict[str, Any]] = []
    with unit_of_work(factory) as session:
        window_start = now - thresholds.saturation_window
        facts = _instance_facts(session, customer_id, now - thresholds.idle_window)
        performance = _agent(session, customer_id, AgentType.PERFORMANCE)
        cost = _agent(session, customer_id, AgentType.COST)
        if performance is None or cost is None:
            return [{"outcome": "skipped", "reason": "no agent serves the customer"}]
        serving_agent = performance.agent_id
        assert serving_agent is not None
        for (instance, model), series in sorted(
            _serving_series(session, serving_agent, customer_id, window_start).items()
        ):
            kv = series.get("vllm.kv_cache_usage", [])
            waiting = series.get("vllm.requests_waiting", [])
            finished = series.get("vllm.requests_finished_per_second", [])
            finding = scale_up_finding(
                [v for _, v in kv], [v for _, v in waiting], [v for _, v in finished], thresholds
            )
            if finding is None:
                continue
            if _pending(session, customer_id, "scale_up", instance, model):
                outcomes.append({"type": "scale_up", "instance_id": instance, "outcome": "already pending"})
                continue
            fact = facts.get(instance, {})
            price = hourly_price(catalog, fact.get("instance_type"), fact.get("purchase_option"))
            estimate = {
                **{k: finding[k] for k in ("queue_wait_seconds", "mean_waiting_recent", "finished_per_second_recent")},
                "latency_formula": finding["latency_formula"],
                "added_monthly_cost": round(price * catalog.hours_per_month, 2) if price is not None else None,
                "cost_formula": f"hourly price of {fact.get('instance_type')} "
                f"({fact.get('purchase_option') or 'on_demand'}) x {catalog.hours_per_month:g} h/month",
            }
            wait = finding["queue_wait_seconds"]
            created = recommendations.create_recommendation(
                session,
                performance,
                rec_schemas.RecommendationCreate(
                    customer_id=customer_id,
                    type="scale_up",
                    title=f"Add a replica of {model or 'the model'} next to {instance}: "
                    + ("its queue is growing" if "grew" in " ".join(finding["signals"]) else "its KV cache is full"),
                    description=(
                        "; ".join(finding["signals"])
                        + " over the last "
                        + f"{thresholds.saturation_window.total_seconds() / 60:g} minutes. "
                        + (
                            f"Requests now wait about {wait:.1f} s in the queue ({finding['latency_formula']}); "
                            if wait is not None
                            else ""
                        )
                        + (
                            f"another {fact.get('instance_type')} costs about "
                            f"${estimate['added_monthly_cost']:,.2f} per month."
                            if estimate["added_monthly_cost"] is not None
                            else "the instance type is not in the price catalog, so the cost is unknown."
                        )
                    )[:5000],
                    estimated_savings=None,
                    confidence_score=round(min(1.0, 0.5 + 0.25 * len(finding["signals"])), 3),
                    priority=RecommendationPriority.HIGH,
                    data={
                        "instance_id": instance,
                        "model_name": model,
                        "instance_type": fact.get("instance_type"),
                        "zone": fact.get("zone"),
                        "purchase_option": fact.get("purchase_option"),
                        "estimate": estimate,
                        "evidence": {
                            "window": {"start": window_start.isoformat(), "end": now.isoformat()},
                            "signals": finding["signals"],
                            "series": [
                                {
                                    "query": _promql(key, labels, step),
                                    "metric_name": key,
                                    "values": _per_minute(points),
                                }
                                for key, points in (
                                    ("vllm.kv_cache_usage", kv),
                                    ("vllm.requests_waiting", waiting),
                                    ("vllm.requests_finished_per_second", finished),
                                )
                            ],
                        },
                    },
                ),
            )
            outcomes.append(
                {
                    "type": "scale_up",
                    "instance_id": instance,
                    "outcome": "created",
                    "recommendation_id": str(created.id),
                }
            )
        expected = round(thresholds.idle_window.total_seconds() / 3600)
        hour_end = now.replace(minute=0, second=0, microsecond=0)
        for instance, hourly in sorted(
            _hourly_gpu(session, customer_id, hour_end - thresholds.idle_window, hour_end).items()
        ):
            fact = facts.get(instance, {})
            gpus = int(fact.get("gpus") or 0) or (
                catalog.instance_types[fact["instance_type"]].gpus
                if fact.get("instance_type") in catalog.instance_types
                else 1
            )
            found, why_not = downsize_finding(
                hourly, expected, gpus, fact.get("instance_type"), fact.get("purchase_option"), catalog, thresholds
            )
            if found is None:
                if why_not:
                    outcomes.append(
                        {"type": "gpu_downsize", "instance_id": instance, "outcome": "no evidence", "reason": why_not}
                    )
                continue
            if _pending(session, customer_id, "gpu_downsize", instance, None):
                outcomes.append({"type": "gpu_downsize", "instance_id": instance, "outcome": "already pending"})
                continue
            created = recommendations.create_recommendation(
                session,
                cost,
                rec_schemas.RecommendationCreate(
                    customer_id=customer_id,
                    type="gpu_downsize",
                    title=f"Move {instance} from {found['current_type']} to {found['proposed_type']}",
                    description=(
                        f"Its {gpus} GPU(s) were at most {found['p95_utilization']:.0f} % busy (95th percentile of "
                        f"hourly means, mean {found['mean_utilization']:.0f} %) over the last "
                        f"{thresholds.idle_window.total_seconds() / 86400:g} days; {found['gpus_needed']} GPU(s) "
                        f"carry that load at {thresholds.target_utilization:g} % ({found['needed_formula']}). "
                        f"Saves about ${found['monthly_savings']:,.2f} per month ({found['savings_formula']})."
                    ),
                    estimated_savings=Decimal(str(found["monthly_savings"])).quantize(Decimal("0.01")),
                    confidence_score=round(
                        found["coverage"] * (1 - 0.5 * found["p95_utilization"] / thresholds.idle_p95), 3
                    ),
                    priority=RecommendationPriority.HIGH
                    if found["monthly_savings"] >= 1000
                    else RecommendationPriority.MEDIUM,
                    data={
                        "instance_id": instance,
                        "zone": fact.get("zone"),
                        "purchase_option": fact.get("purchase_option"),
                        "estimate": found,
                        "evidence": {
                            "window": {
                                "start": (hour_end - thresholds.idle_window).isoformat(),
                                "end": hour_end.isoformat(),
                            },
                            "query": _promql("utilization", labels, step, ResourceType.GPU),
                            "hourly_utilization": [round(v, 2) for v in hourly],
                        },
                    },
                ),
            )
            outcomes.append(
                {
                    "type": "gpu_downsize",
                    "instance_id": instance,
                    "outcome": "created",
                    "recommendation_id": str(created.id),
                }
            )
    return outcomes
