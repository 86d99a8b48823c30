"""Spot migration (cost agent, `cost_analysis`): find steady instances, propose moving them to spot, and roll the
move out in phases, each gated by the quality judge on the traffic it carries.

Analysis: an instance is steady enough for spot when its hourly utilization over the look-back window varies
little (coefficient of variation <= 0.25 by default) and there are at least 24 hourly samples; its instance type
must be in the price catalog. Savings per month = sum over the candidates of
(on-demand hourly price - spot hourly price) x hours per month (730).
Confidence = (1 - CV / (2 x max CV)) x min(1, hours / 72), averaged over the candidates; risk follows the catalog's
interruption band (<5 % low, 5-10 % medium, else high).

Rollout: phases of 10 %, 50 % and 100 % of the candidates (at least one instance each). After a phase is applied,
the quality judge compares the traffic that carries `metadata.optimization_id` since the phase started with each
model version's active baseline. A regression stops the rollout: the applied phases are undone in reverse order
and the optimization is rolled back through the control plane. When every phase passes, the optimization
completes with its actual savings.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from optiinfra.agent_state import service as agent_state
from optiinfra.agent_state.schemas import LockAcquire
from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import ConflictError, NotFoundError
from optiinfra.models import (
    Agent,
    ArtifactType,
    Customer,
    Optimization,
    OptimizationStatus,
    QualityMetric,
    RecommendationPriority,
    WorkflowType,
)
from optiinfra.quality import repository as quality_repository
from optiinfra.quality.evaluation import evaluate
from optiinfra.quality.schemas import BaselineWindow
from optiinfra.quality.settings import settings_of
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows import repository
from optiinfra.workflows.catalog import PriceCatalog, load_catalog
from optiinfra.workflows.engine import (
    FinishedRun,
    StepContext,
    StepDefinition,
    StepFailedError,
    WorkflowDefinition,
)
from optiinfra.workflows.executors import Executor, Phase

MAX_CV = 0.25
MIN_HOURS = 24
PHASES = (("phase_10", 0.10), ("phase_50", 0.50), ("phase_100", 1.00))
RISK = {"<5%": "low", "5-10%": "medium"}


def _agent_principal(context: StepContext) -> Principal:
    with unit_of_work(context.factory) as session:
        agent = session.get(Agent, context.agent_id)
        assert agent is not None
        return Principal.for_agent(agent)


def find_candidates(histories: list[repository.InstanceHistory], catalog: PriceCatalog) -> dict[str, Any]:
    """Pure: which instances are steady enough for spot, and what moving them saves per month."""
    candidates: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for history in histories:
        values = history.hourly_utilization
        reason = None
        price = catalog.instance_types.get(history.instance_type or "")
        mean = statistics.fmean(values) if values else 0.0
        cv = statistics.pstdev(values) / mean if len(values) > 1 and mean > 0 else math.inf
        if price is None:
            reason = f"instance type {history.instance_type!r} is not in the price catalog"
        elif len(values) < MIN_HOURS:
            reason = f"only {len(values)} hourly samples (needs {MIN_HOURS})"
        elif cv > MAX_CV:
            reason = f"utilization varies too much (CV {cv:.2f} > {MAX_CV})"
        if reason is not None or price is None:
            rejected.append({"instance_id": history.instance_id, "reason": reason})
            continue
        monthly = (price.on_demand_hourly - price.spot_hourly) * catalog.hours_per_month
        confidence = (1 - cv / (2 * MAX_CV)) * min(1.0, len(values) / 72)
        candidates.append(
            {
                "instance_id": history.instance_id,
                "instance_type": history.instance_type,
                "resource_type": str(history.resource_type),
                "hours": len(values),
                "mean_utilization": round(mean, 2),
                "cv": round(cv, 4),
                "on_demand_hourly": price.on_demand_hourly,
                "spot_hourly": price.spot_hourly,
                "monthly_savings": round(monthly, 2),
                "interruption_rate": price.interruption_rate,
                "confidence": round(confidence, 3),
            }
        )
    total = round(sum(c["monthly_savings"] for c in candidates), 2)
    risks = [RISK.get(c["interruption_rate"], "high") for c in candidates]
    risk = "high" if "high" in risks else "medium" if "medium" in risks else "low"
    return {
        "candidates": candidates,
        "rejected": rejected,
        "monthly_savings": total,
        "confidence": round(statistics.fmean(c["confidence"] for c in candidates), 3) if candidates else 0.0,
        "risk": risk if candidates else None,
        "formula": f"sum over candidates of (on_demand_hourly - spot_hourly) x {catalog.hours_per_month:g} h/month",
    }


# --- analysis ------------------------------------------------------------------------------------------------


def _collect(context: StepContext) -> dict[str, Any]:
    lookback = timedelta(days=float(context.input.get("lookback_days", 7)))
    with unit_of_work(context.factory) as session:
        histories = repository.utilization_history(
            session, context.customer_id, datetime.now(UTC) - lookback, timedelta(hours=1)
        )
    return {
        "instances": [
            {
                "instance_id": h.instance_id,
                "instance_type": h.instance_type,
                "resource_type": str(h.resource_type),
                "hourly_utilization": [round(v, 3) for v in h.hourly_utilization],
            }
            for h in histories
        ]
    }


def _analyze(context: StepContext) -> dict[str, Any]:
    catalog_path = context.input.get("price_catalog")
    catalog = load_catalog(Path(catalog_path) if catalog_path else None)
    histories = [
        repository.InstanceHistory(
            i["instance_id"], i["instance_type"], i["resource_type"], list(i["hourly_utilization"])
        )
        for i in context.outputs["collect_utilization"]["instances"]
    ]
    analysis = find_candidates(histories, catalog)
    context.write_artifact(
        "spot-analysis.json", ArtifactType.REPORT, json.dumps(analysis, indent=2), "application/json"
    )
    return {**analysis, "region": catalog.region}


def _recommend(context: StepContext) -> dict[str, Any]:
    analysis = context.outputs["analyze_candidates"]
    candidates = analysis["candidates"]
    if not candidates:
        return {"recommendation_id": None, "reason": "no instance is steady enough for spot", "_stop_workflow": True}
    principal = _agent_principal(context)
    instances = [c["instance_id"] for c in candidates]
    with unit_of_work(context.factory) as session:
        recommendation = recommendations.create_recommendation(
            session,
            principal,
            rec_schemas.RecommendationCreate(
                customer_id=context.customer_id,
                type="spot_migration",
                title=f"Move {len(instances)} steady instance(s) to spot",
                description=(
                    f"{len(instances)} instance(s) kept a steady load over the look-back window; spot capacity in "
                    f"{analysis['region']} saves about ${analysis['monthly_savings']:,.2f} per month "
                    f"({analysis['formula']}). Interruption risk: {analysis['risk']}. Rolled out in phases of "
                    "10 %, 50 % and 100 %, each gated by the quality judge."
                ),
                estimated_savings=Decimal(str(analysis["monthly_savings"])).quantize(Decimal("0.01")),
                confidence_score=min(1.0, max(0.0, analysis["confidence"])),
                priority=RecommendationPriority.HIGH
                if analysis["monthly_savings"] >= 1000
                else RecommendationPriority.MEDIUM,
                data={
                    "instances": instances,
                    "candidates": candidates,
                    "risk": analysis["risk"],
                    "formula": analysis["formula"],
                    "phases": [share for _, share in PHASES],
                    "analysis_workflow_id": str(context.execution_id),
                },
            ),
        )
    return {"recommendation_id": str(recommendation.id), "monthly_savings": analysis["monthly_savings"]}


ANALYSIS = WorkflowDefinition(
    name="spot_migration_analysis",
    workflow_type=WorkflowType.COST_ANALYSIS,
    steps=(
        StepDefinition("collect_utilization", _collect, max_retries=2),
        StepDefinition("analyze_candidates", _analyze, max_retries=0),
        StepDefinition("create_recommendation", _recommend, max_retries=0),
    ),
)


# --- rollout -------------------------------------------------------------------------------------------------


def plan_phases(instances: list[str]) -> list[Phase]:
    """Cumulative phases of 10 %, 50 % and 100 % of the instances, each moving at least one more instance."""
    phases, moved = [], 0
    for name, share in PHASES:
        target = max(moved + 1, math.ceil(share * len(instances))) if moved < len(instances) else moved
        target = min(target, len(instances))
        if target > moved:
            phases.append(Phase(name, tuple(instances[moved:target]), target / len(instances)))
        moved = target
    return phases


def _optimization(context: StepContext) -> Optimization:
    with unit_of_work(context.factory) as session:
        optimization = session.get(Optimization, uuid.UUID(context.input["optimization_id"]))
        assert optimization is not None
        return optimization


def fleet_lock(customer_id: uuid.UUID) -> str:
    """The lock a rollout holds on the customer's fleet: two rollouts never move one fleet at once."""
    return f"fleet:{customer_id}"


def _start(context: StepContext) -> dict[str, Any]:
    try:
        with unit_of_work(context.factory) as session:
            agent_state.acquire_lock(
                session,
                _agent_principal(context),
                context.agent_id,
                fleet_lock(context.customer_id),
                LockAcquire(purpose=f"spot rollout of optimization {context.input['optimization_id']}"),
            )
    except ConflictError as busy:
        raise StepFailedError(busy.message, busy.details) from busy
    optimization = _optimization(context)
    if optimization.status is OptimizationStatus.QUEUED:
        with unit_of_work(context.factory) as session:
            recommendations.start_optimization(session, _agent_principal(context), optimization.id)
    elif optimization.status is not OptimizationStatus.EXECUTING:
        raise StepFailedError(f"The optimization is {optimization.status}; only a queued one can be rolled out.")
    with unit_of_work(context.factory) as session:
        recommendation = recommendations.get_recommendation(
            session, Principal.operator(), optimization.recommendation_id
        )
    instances = list(recommendation.data.get("instances", []))
    if not instances:
        raise StepFailedError("The recommendation names no instances to move.")
    return {
        "instances": instances,
        "estimated_savings": str(recommendation.estimated_savings or 0),
        "phases": [
            {"name": p.name, "instances": list(p.instances), "share": p.cumulative_share}
            for p in plan_phases(instances)
        ],
    }


def _judge_phase(context: StepContext, phase_name: str, since: datetime) -> dict[str, Any]:
    """The judge on the traffic carried since the phase started (records tagged with this optimization)."""
    optimization_id = context.input["optimization_id"]
    phase_tag = QualityMetric.metadata_["phase"].astext
    # The phase's traffic: records tagged with this optimization and this phase, or with the optimization only
    # and sent since the phase started.
    tagged = (QualityMetric.metadata_["optimization_id"].astext == optimization_id) & (
        (phase_tag == phase_name) | (phase_tag.is_(None) & (QualityMetric.timestamp >= since))
    )
    with unit_of_work(context.factory) as session:
        customer = session.get(Customer, context.customer_id)
        assert customer is not None
        settings = settings_of(customer)
        versions = quality_repository.model_versions_where(session, context.customer_id, tagged)
        verdicts: list[dict[str, Any]] = []
        for model_name, model_version in versions:
            now = datetime.now(UTC)
            baseline = quality_repository.active_baseline(session, customer.id, model_name, model_version, now)
            if baseline is None:
                verdicts.append({"model_name": model_name, "model_version": model_version, "verdict": "no_baseline"})
                continue
            window = BaselineWindow(end=now + timedelta(minutes=10))
            _, rows, findings, verdict = evaluate(
                session, customer.id, model_name, model_version, window, settings, now, extra_condition=tagged
            )
            verdicts.append(
                {
                    "model_name": model_name,
                    "model_version": model_version,
                    "verdict": verdict,
                    "sample_size": rows.size,
                    "regressions": [f.model_dump(mode="json") for f in findings if f.verdict == "regression"],
                }
            )
    return {"verdicts": verdicts, "regression": any(v["verdict"] == "regression" for v in verdicts)}


def make_rollout(executor_for: Callable[[StepContext], Executor]) -> WorkflowDefinition:
    """The phased rollout, acting through the executor `executor_for` picks for a run."""

    def phase_step(index: int) -> Callable[[StepContext], dict[str, Any]]:
        def run(context: StepContext) -> dict[str, Any]:
            plan = context.outputs["start_optimization"]["phases"]
            if index >= len(plan):
                return {"skipped": "fewer instances than phases"}
            spec = plan[index]
            phase = Phase(spec["name"], tuple(spec["instances"]), spec["share"])
            executor = executor_for(context)
            started = datetime.now(UTC)
            applied = executor.apply(phase, f"{context.input['optimization_id']}:{phase.name}:apply")
            gate = _judge_phase(context, phase.name, started)
            if gate["regression"]:
                undone = []
                for earlier in reversed(plan[: index + 1]):
                    undo_phase = Phase(earlier["name"], tuple(earlier["instances"]), earlier["share"])
                    executor.undo(undo_phase, f"{context.input['optimization_id']}:{earlier['name']}:undo")
                    undone.append(earlier["name"])
                reason = f"quality regression during {phase.name}: " + ", ".join(
                    f"{r['metric_name']} of {v['model_name']} {v['model_version']}"
                    for v in gate["verdicts"]
                    for r in v.get("regressions", [])
                )
                with unit_of_work(context.factory) as session:
                    recommendations.rollback_optimization(
                        session,
                        Principal.system("rollout"),
                        uuid.UUID(context.input["optimization_id"]),
                        rec_schemas.Rollback(reason=reason[:5000]),
                    )
                context.write_artifact(
                    f"{phase.name}-quality-gate.json",
                    ArtifactType.ALERT,
                    json.dumps(gate, indent=2),
                    "application/json",
                )
                raise StepFailedError(reason, {"gate": gate, "undone_phases": undone})
            with unit_of_work(context.factory) as session:
                recommendations.report_progress(
                    session,
                    _agent_principal(context),
                    uuid.UUID(context.input["optimization_id"]),
                    rec_schemas.Progress(
                        progress=max(1, min(99, round(phase.cumulative_share * 100) - 1)),
                        result={"phases_completed": [p["name"] for p in plan[: index + 1]]},
                    ),
                )
            return {"applied": applied, "gate": gate}

        return run

    def complete(context: StepContext) -> dict[str, Any]:
        savings = Decimal(context.outputs["start_optimization"]["estimated_savings"])
        with unit_of_work(context.factory) as session:
            done = recommendations.complete_optimization(
                session,
                _agent_principal(context),
                uuid.UUID(context.input["optimization_id"]),
                rec_schemas.Completion(
                    actual_savings=savings,
                    result={"phases": [p["name"] for p in context.outputs["start_optimization"]["phases"]]},
                ),
            )
        return {"status": str(done.status), "actual_savings": str(done.actual_savings)}

    def release_fleet(run: FinishedRun) -> None:
        # NotFoundError: the run ended before it took the lock.
        with contextlib.suppress(NotFoundError), unit_of_work(run.factory) as session:
            agent = session.get(Agent, run.agent_id)
            assert agent is not None
            principal = Principal.for_agent(agent)
            agent_state.release_lock(session, principal, run.agent_id, fleet_lock(run.customer_id))

    return WorkflowDefinition(
        name="spot_migration_rollout",
        workflow_type=WorkflowType.COST_ANALYSIS,
        on_finish=release_fleet,
        steps=(
            StepDefinition("start_optimization", _start, max_retries=2),
            *(
                StepDefinition(name, phase_step(index), max_retries=2, timeout_seconds=300)
                for index, (name, _) in enumerate(PHASES)
            ),
            StepDefinition("complete_optimization", complete, max_retries=0),
        ),
    )
