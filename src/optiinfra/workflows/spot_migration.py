"""Spot migration (cost agent, `cost_analysis`): find steady instances, propose moving them to spot, and roll the
move out in phases, each gated by the quality judge on the traffic it carries.

Analysis: an instance already on spot (purchase option from the collector's labels) is left alone; one is steady
enough for spot when its hourly utilization over the look-back window varies
little (coefficient of variation <= 0.25 by default) and there are at least 24 hourly samples; its instance type
must be in the price catalog. Savings per month = sum over the candidates of
(on-demand hourly price - spot hourly price) x hours per month (730).
Confidence = (1 - CV / (2 x max CV)) x min(1, hours / 72), averaged over the candidates; risk follows the catalog's
interruption band (<5 % low, 5-10 % medium, else high).

Rollout: phases of 10 %, 50 % and 100 % of the candidates (at least one instance each). After a phase is applied,
it waits for evidence (`phase_gate`): a bake time and enough traffic on the changed instances and on a concurrent
control, then the judge compares the two arms. A regression stops the rollout: the applied phases are undone in
reverse order and the optimization is rolled back through the control plane. Too little traffic by the deadline
pauses the run for a human. When every phase passes, the optimization completes with its actual savings.
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
    Optimization,
    OptimizationStatus,
    RecommendationPriority,
    WorkflowType,
)
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows import repository
from optiinfra.workflows.catalog import PriceCatalog, load_catalog
from optiinfra.workflows.engine import (
    CancelledRun,
    FinishedRun,
    Pause,
    StepContext,
    StepDefinition,
    StepFailedError,
    StepResult,
    Wait,
    WorkflowDefinition,
)
from optiinfra.workflows.executors import Executor, Phase
from optiinfra.workflows.phase_gate import ControlPeriod, GateConfig, gather

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
        if history.purchase_option == "spot":
            reason = "already on spot capacity"
        elif price is None:
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
                "zone": history.zone,
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
                "purchase_option": h.purchase_option,
                "zone": h.zone,
            }
            for h in histories
        ]
    }


def _analyze(context: StepContext) -> dict[str, Any]:
    catalog_path = context.input.get("price_catalog")
    catalog = load_catalog(Path(catalog_path) if catalog_path else None)
    histories = [
        repository.InstanceHistory(
            i["instance_id"],
            i["instance_type"],
            i["resource_type"],
            list(i["hourly_utilization"]),
            purchase_option=i.get("purchase_option"),
            zone=i.get("zone"),
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
    agent = _agent_principal(context)
    if optimization.status is OptimizationStatus.QUEUED:
        with unit_of_work(context.factory) as session:
            recommendations.start_optimization(session, agent, optimization.id)
    elif optimization.status is not OptimizationStatus.EXECUTING:
        raise StepFailedError(f"The optimization is {optimization.status}; only a queued one can be rolled out.")
    with unit_of_work(context.factory) as session:
        recommendation = recommendations.get_recommendation(session, agent, optimization.recommendation_id)
    instances = list(recommendation.data.get("instances", []))
    if not instances:
        raise StepFailedError("The recommendation names no instances to move.")
    return {
        "instances": instances,
        "started_at": datetime.now(UTC).isoformat(),
        "estimated_savings": str(recommendation.estimated_savings or 0),
        "phases": [
            {"name": p.name, "instances": list(p.instances), "share": p.cumulative_share}
            for p in plan_phases(instances)
        ],
    }


def _phase_spec(context: StepContext, index: int) -> dict[str, Any] | None:
    plan = context.outputs["start_optimization"]["phases"]
    return plan[index] if index < len(plan) else None


def _control_period(context: StepContext, index: int, phase: Phase, started: datetime) -> ControlPeriod | None:
    """None while unchanged instances remain (a concurrent control exists); else the period to compare with."""
    instances = context.outputs["start_optimization"]["instances"]
    plan = context.outputs["start_optimization"]["phases"]
    if len(_cumulative(plan, index)) < len(instances):
        return None
    if index > 0:
        previous = context.outputs.get(plan[index - 1]["name"], {})
        if previous.get("started_at") and previous.get("judged_at"):
            return ControlPeriod(
                start=datetime.fromisoformat(previous["started_at"]),
                end=datetime.fromisoformat(previous["judged_at"]),
                changed_instances=tuple(previous.get("instances", [])),
                source="previous_phase",
            )
    began = datetime.fromisoformat(context.outputs["start_optimization"]["started_at"])
    return ControlPeriod(began - timedelta(days=1), began, (), "day_before_rollout")


def _cumulative(plan: list[dict[str, Any]], index: int) -> list[str]:
    return [instance for spec in plan[: index + 1] for instance in spec["instances"]]


def _undo(executor: Executor, optimization_id: str, applied: list[dict[str, Any]]) -> list[str]:
    undone = []
    for earlier in reversed(applied):
        executor.undo(
            Phase(earlier["name"], tuple(earlier["instances"]), earlier["share"]),
            f"{optimization_id}:{earlier['name']}:undo",
        )
        undone.append(earlier["name"])
    return undone


def _roll_back(factory: Any, optimization_id: str, reason: str) -> bool:
    """Roll the optimization back through the control plane, unless it is already over."""
    with unit_of_work(factory) as session:
        optimization = session.get(Optimization, uuid.UUID(optimization_id))
        if optimization is None or optimization.status not in {
            OptimizationStatus.EXECUTING,
            OptimizationStatus.COMPLETED,
        }:
            return False
        recommendations.rollback_optimization(
            session, Principal.system("rollout"), optimization.id, rec_schemas.Rollback(reason=reason[:5000])
        )
        return True


def make_rollout(executor_for: Callable[[StepContext], Executor]) -> WorkflowDefinition:
    """The phased rollout, acting through the executor `executor_for` picks for a run."""

    def phase_step(index: int) -> Callable[[StepContext], StepResult]:
        def run(context: StepContext) -> StepResult:
            spec = _phase_spec(context, index)
            if spec is None:
                return {"skipped": "fewer instances than phases"}
            plan = context.outputs["start_optimization"]["phases"]
            phase = Phase(spec["name"], tuple(spec["instances"]), spec["share"])
            optimization_id = str(context.input["optimization_id"])
            config = GateConfig.of(context.input.get("gate"))
            executor = executor_for(context)
            state = dict(context.state)
            if not state.get("applied"):
                applied = executor.apply(phase, f"{optimization_id}:{phase.name}:apply")
                state = {"applied": applied, "started_at": datetime.now(UTC).isoformat()}
            started = datetime.fromisoformat(state["started_at"])
            instances = _cumulative(plan, index)
            now = datetime.now(UTC)
            bake_until = started + timedelta(seconds=config.bake_seconds)
            deadline = started + timedelta(seconds=config.deadline_seconds)
            control_period = _control_period(context, index, phase, started)
            with unit_of_work(context.factory) as session:
                evidence = gather(
                    session, context.customer_id, optimization_id, instances, started, now, config, control_period
                )
            record = {
                "phase": phase.name,
                "instances": instances,
                "started_at": state["started_at"],
                "bake_until": bake_until.isoformat(),
                "deadline": deadline.isoformat(),
                "min_samples": config.min_samples,
                "samples": evidence.samples,
                "control_source": "concurrent" if control_period is None else control_period.source,
            }
            if evidence.regression:
                applied_phases = plan[: index + 1]
                undone = _undo(executor, optimization_id, applied_phases)
                reason = f"quality regression during {phase.name}: " + ", ".join(
                    f"{r['metric_name']} of {v['model_name']} {v['model_version']}"
                    for v in evidence.verdicts
                    for r in v.get("regressions", [])
                )
                _roll_back(context.factory, optimization_id, reason)
                gate = {**record, "verdicts": evidence.verdicts, "regression": True, "undone_phases": undone}
                context.write_artifact(
                    f"{phase.name}-quality-gate.json",
                    ArtifactType.ALERT,
                    json.dumps(gate, indent=2),
                    "application/json",
                )
                raise StepFailedError(reason, {"gate": gate, "undone_phases": undone})
            decision = context.decision
            if decision is None and (now < bake_until or not evidence.ready):
                if now >= deadline:
                    return Pause(
                        reason=f"{phase.name}: not enough traffic on both arms by the deadline; resume or abort",
                        details={**record, "verdicts": evidence.verdicts},
                        state=state,
                    )
                wake = min(deadline, max(bake_until, now + timedelta(seconds=config.poll_seconds)))
                if now >= bake_until:
                    wake = min(deadline, now + timedelta(seconds=config.poll_seconds))
                return Wait(until=wake, waiting_for={**record, "judged_so_far": len(evidence.verdicts)}, state=state)
            with unit_of_work(context.factory) as session:
                recommendations.report_progress(
                    session,
                    _agent_principal(context),
                    uuid.UUID(optimization_id),
                    rec_schemas.Progress(
                        progress=max(1, min(99, round(phase.cumulative_share * 100) - 1)),
                        result={"phases_completed": [p["name"] for p in plan[: index + 1]]},
                    ),
                )
            verdict = "pass" if decision is None else "passed_by_human"
            return {
                "applied": state["applied"],
                **record,
                "judged_at": now.isoformat(),
                "gate": {"verdict": verdict, "verdicts": evidence.verdicts, "regression": False, "decision": decision},
            }

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

    def undo_run(run: CancelledRun) -> dict[str, Any]:
        """Cancelled or aborted: undo every applied phase in reverse, then roll the optimization back."""
        start = run.outputs.get("start_optimization")
        if not start:
            return {"undone_phases": [], "rolled_back": False}
        applied = [
            spec
            for spec in start["phases"]
            if run.outputs.get(spec["name"], {}).get("applied") or run.states.get(spec["name"], {}).get("applied")
        ]
        context = StepContext(
            execution_id=run.execution_id,
            customer_id=run.customer_id,
            agent_id=run.agent_id,
            input=run.input,
            outputs=dict(run.outputs),
            attempt=0,
            factory=run.factory,
            artifact_root=Path("."),
            step_id=run.execution_id,
        )
        optimization_id = str(run.input["optimization_id"])
        undone = _undo(executor_for(context), optimization_id, applied)
        who = run.reason.get("by", "someone")
        kind = "aborted" if run.reason.get("kind") == "abort" else "cancelled"
        rolled_back = _roll_back(run.factory, optimization_id, f"Rollout {kind} by {who}; applied phases undone.")
        return {"undone_phases": undone, "rolled_back": rolled_back}

    return WorkflowDefinition(
        name="spot_migration_rollout",
        workflow_type=WorkflowType.COST_ANALYSIS,
        on_finish=release_fleet,
        on_cancel=undo_run,
        steps=(
            StepDefinition("start_optimization", _start, max_retries=2),
            *(
                StepDefinition(name, phase_step(index), max_retries=2, timeout_seconds=300)
                for index, (name, _) in enumerate(PHASES)
            ),
            StepDefinition("complete_optimization", complete, max_retries=0),
        ),
    )
