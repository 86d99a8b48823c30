"""The spot-migration and scaling-decision workflows end to end, asserted through the database and event log."""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, insert, select

from optiinfra.agent_state import service as agent_state
from optiinfra.auth.principal import Principal, Role
from optiinfra.db.engine import unit_of_work
from optiinfra.models import (
    Agent,
    AgentType,
    Customer,
    Event,
    Optimization,
    OptimizationStatus,
    Recommendation,
    RecommendationStatus,
    ResourceMetric,
    ResourceType,
    ScalingEvent,
    StepStatus,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
)
from optiinfra.quality import service as quality_service
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow
from optiinfra.quality.simulation import Traffic, simulate
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations import service as recommendations
from optiinfra.workflows.catalog import load_catalog
from optiinfra.workflows.engine import WorkflowRunner
from optiinfra.workflows.executors import Phase, SimulatorExecutor
from optiinfra.workflows.repository import InstanceHistory
from optiinfra.workflows.scaling import ScalingPolicy, decide
from optiinfra.workflows.service import build_runner
from optiinfra.workflows.spot_migration import find_candidates, fleet_lock, make_rollout, plan_phases
from tests.workflows.conftest import Env

OPERATOR = Principal.operator()
NOW = datetime.now(UTC)


def add_utilization(
    env: Env,
    instance: str,
    instance_type: str,
    values: list[float],
    step: timedelta,
    resource: ResourceType = ResourceType.GPU,
) -> None:
    start = NOW - step * len(values)
    rows = [
        {
            "agent_id": env.resource_agent_id,
            "customer_id": env.customer_id,
            "instance_id": instance,
            "resource_type": resource,
            "metric_name": "utilization",
            "metric_value": value,
            "unit": "percent",
            "timestamp": start + step * i,
            "metadata_": {"instance_type": instance_type},
        }
        for i, value in enumerate(values)
    ]
    with unit_of_work(env.factory) as session:
        session.execute(insert(ResourceMetric), rows)


def steady(rng: np.random.Generator, hours: int, level: float = 60.0, noise: float = 3.0) -> list[float]:
    return list(np.clip(rng.normal(level, noise, hours), 0, 100))


# --- pure parts ------------------------------------------------------------------------------------------------


def test_candidates_are_steady_instances_in_the_catalog_with_the_savings_formula() -> None:
    rng = np.random.default_rng(1)
    catalog = load_catalog()
    histories = [
        InstanceHistory("steady-a", "g5.2xlarge", ResourceType.GPU, steady(rng, 96)),
        InstanceHistory("bursty", "g5.2xlarge", ResourceType.GPU, list(rng.choice([5.0, 95.0], 96))),
        InstanceHistory("young", "g5.2xlarge", ResourceType.GPU, steady(rng, 10)),
        InstanceHistory("exotic", "x9.huge", ResourceType.GPU, steady(rng, 96)),
    ]
    analysis = find_candidates(histories, catalog)
    assert [c["instance_id"] for c in analysis["candidates"]] == ["steady-a"]
    price = catalog.instance_types["g5.2xlarge"]
    assert analysis["monthly_savings"] == pytest.approx((price.on_demand_hourly - price.spot_hourly) * 730, abs=0.01)
    reasons = {r["instance_id"]: r["reason"] for r in analysis["rejected"]}
    assert "varies too much" in reasons["bursty"]
    assert "hourly samples" in reasons["young"]
    assert "not in the price catalog" in reasons["exotic"]
    assert analysis["risk"] == "low"
    assert 0 < analysis["confidence"] <= 1


def test_phases_are_cumulative_and_never_empty() -> None:
    assert [(p.name, p.instances) for p in plan_phases(["a"])] == [("phase_10", ("a",))]
    phases = plan_phases([f"i{n}" for n in range(10)])
    assert [len(p.instances) for p in phases] == [1, 4, 5]
    assert [p.cumulative_share for p in phases] == [0.1, 0.5, 1.0]


def test_simulator_is_idempotent_per_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    simulator = SimulatorExecutor(tmp_path / "fleet.json", on_apply=lambda phase: calls.append(phase.name))
    phase = Phase("phase_10", ("a", "b"), 0.1)
    simulator.apply(phase, "k1")
    again = simulator.apply(phase, "k1")
    assert again["replayed"] is True
    assert calls == ["phase_10"]
    assert simulator.capacity() == {"a": "spot", "b": "spot"}
    simulator.undo(phase, "k1-undo")
    assert simulator.capacity() == {"a": "on_demand", "b": "on_demand"}


@pytest.mark.parametrize("seed", range(5))
def test_scaling_hysteresis_does_not_flap_on_noise_around_a_threshold(seed: int) -> None:
    # Utilization wandering around 80 % (the scale-up threshold) with noise: a naive threshold rule would flip
    # every few buckets; sustained-bucket hysteresis with a cool-down changes the fleet rarely.
    rng = np.random.default_rng(seed)
    series = list(np.clip(rng.normal(78, 6, 288), 0, 100))  # a day of 5-minute buckets
    policy = ScalingPolicy()
    instances, last_at, changes, naive_changes = 4, None, 0, 0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(policy.sustain, len(series)):
        now = start + timedelta(minutes=5 * index)
        decision = decide(series[: index + 1], instances, policy, last_scaled_at=last_at, now=now)
        naive_changes += (series[index] > 80) != (series[index - 1] > 80)
        if decision.action != "none":
            changes += 1
            instances, last_at = decision.target_instances, now
    assert naive_changes > 40
    assert changes <= 12  # at most one change per cool-down period, and only on sustained runs
    # Never down: 78 % is far above the 30 % scale-down threshold.
    assert instances >= 4


def test_scaling_decisions_on_clear_series() -> None:
    policy = ScalingPolicy()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert decide([85, 90, 92], 3, policy, last_scaled_at=None, now=now).action == "scale_up"
    assert decide([20, 15, 25], 3, policy, last_scaled_at=None, now=now).action == "scale_down"
    assert decide([85, 50, 92], 3, policy, last_scaled_at=None, now=now).action == "none"
    cooling = decide([85, 90, 92], 3, policy, last_scaled_at=now - timedelta(minutes=5), now=now)
    assert cooling.action == "none"
    assert "cooling down" in cooling.reason
    assert decide([20, 15, 25], 1, policy, last_scaled_at=None, now=now).action == "none"  # minimum


# --- end to end ----------------------------------------------------------------------------------------------


def quality_rows(
    env: Env, n: int, traffic: Traffic, start: datetime, tag: dict[str, Any], prefix: str, seed: int | None = None
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(abs(hash(prefix)) % 2**32 if seed is None else seed)
    columns = simulate(rng, n, traffic)
    return [
        {
            "request_id": f"{prefix}-{i}",
            "model_name": "gpt-4o",
            "model_version": "v1",
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
            "latency_ms": float(columns["latency_ms"][i]),
            "relevance_score": float(columns["relevance"][i]),
            "coherence_score": float(columns["coherence"][i]),
            "factuality_score": float(columns["factuality"][i]),
            "hallucination_detected": bool(columns["hallucination"][i]),
            "toxicity_score": float(columns["toxicity"][i]),
            "overall_quality_score": float(columns["overall"][i]),
            "metadata": tag,
        }
        for i in range(n)
    ]


def ingest(env: Env, records: list[dict[str, Any]]) -> None:
    with unit_of_work(env.factory) as session:
        quality_service.ingest(session, OPERATOR, records, customer_id=env.customer_id, agent_id=env.cost_agent_id)


def approved_spot_migration(env: Env, instances: int = 4) -> tuple[uuid.UUID, uuid.UUID]:
    """Steady fleet, analysis workflow, recommendation, approval; returns (analysis id, optimization id)."""
    rng = np.random.default_rng(42)
    for n in range(instances):
        add_utilization(env, f"gpu-{n}", "g5.2xlarge", steady(rng, 72), timedelta(hours=1))
    runner = build_runner(env.factory, env.data_dir)
    analysis_id = runner.create(
        "spot_migration_analysis",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"lookback_days": 4},
        actor=OPERATOR,
    )
    assert runner.run(analysis_id, OPERATOR) is WorkflowStatus.COMPLETED
    with unit_of_work(env.factory) as session:
        recommendation = session.scalar(
            select(Recommendation).where(
                Recommendation.customer_id == env.customer_id, Recommendation.type == "spot_migration"
            )
        )
        assert recommendation is not None
        customer = session.get(Customer, env.customer_id)
        assert customer is not None
        principal = Principal(
            role=Role.CUSTOMER, name=customer.email, customer_id=customer.id, customer_status=customer.status
        )
        decision = recommendations.decide(
            session, principal, recommendation.id, rec_schemas.Decision(decision="approve", comment="go")
        )
        assert decision.optimization is not None
        return analysis_id, decision.optimization.id


def establish_quality_baseline(env: Env) -> None:
    ingest(env, quality_rows(env, 300, Traffic(), NOW - timedelta(hours=3), {}, f"base-{uuid.uuid4().hex[:6]}"))
    with unit_of_work(env.factory) as session:
        quality_service.establish_baseline(
            session,
            OPERATOR,
            BaselineCreate(
                customer_id=env.customer_id, model_name="gpt-4o", model_version="v1", window=BaselineWindow(last_n=300)
            ),
        )


def events_of(env: Env, prefix: str) -> list[Event]:
    with env.factory() as session:
        return list(
            session.scalars(
                select(Event)
                .where(Event.customer_id == env.customer_id, Event.event_type.like(f"{prefix}%"))
                .order_by(Event.created_at)
            )
        )


FAST_GATE = {"bake_seconds": 0, "min_samples": 60, "deadline_seconds": 120, "poll_seconds": 1}


def phase_traffic(
    env: Env, optimization_id: uuid.UUID, started: datetime, changed: Traffic, control: Traffic, prefix: str
) -> None:
    """Records of both arms spread over [started, now]: changed ones tagged with the optimization, control untagged."""
    now = datetime.now(UTC)
    span = max((now - started).total_seconds(), 0.001)
    for arm, profile, tag in (
        ("changed", changed, {"optimization_id": str(optimization_id)}),
        ("control", control, {}),
    ):
        # A fixed seed per phase and arm (request ids stay unique): the rollout tests judge the same data every run.
        seed = zlib.crc32(f"{prefix}-{arm}".encode())
        rows = quality_rows(env, 100, profile, started, tag, f"{prefix}-{arm}-{uuid.uuid4().hex[:4]}", seed)
        for i, row in enumerate(rows):
            row["timestamp"] = (started + timedelta(seconds=span * (i + 0.5) / len(rows))).isoformat()
        ingest(env, rows)


def drive(
    env: Env, runner: Any, rollout_id: uuid.UUID, feed: Callable[[str, datetime], None], limit: int = 20
) -> WorkflowStatus:
    """Advance the run as a worker would; whenever a phase waits, feed it traffic."""
    status = runner.run(rollout_id, OPERATOR)
    while status is WorkflowStatus.WAITING and limit > 0:
        with env.factory() as session:
            execution = session.get(WorkflowExecution, rollout_id)
            assert execution is not None
            waiting = execution.metadata_["waiting"]
        feed(waiting["phase"], datetime.fromisoformat(waiting["started_at"]))
        time.sleep(1.1)
        status = runner.run(rollout_id, OPERATOR)
        limit -= 1
    return status


def test_spot_migration_from_analysis_to_completed_rollout(env: Env) -> None:
    analysis_id, optimization_id = approved_spot_migration(env)

    runner = build_runner(env.factory, env.data_dir)
    simulator = SimulatorExecutor(env.data_dir / "fleet.json")
    runner.register(make_rollout(lambda context: simulator))
    rollout_id = runner.create(
        "spot_migration_rollout",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"optimization_id": str(optimization_id), "gate": FAST_GATE},
        actor=OPERATOR,
    )
    # No traffic yet: the first phase waits instead of passing.
    assert runner.run(rollout_id, OPERATOR) is WorkflowStatus.WAITING
    fed: list[str] = []

    def healthy(phase: str, started: datetime) -> None:
        fed.append(phase)
        phase_traffic(env, optimization_id, started, Traffic(), Traffic(), f"ok-{phase}")

    assert drive(env, runner, rollout_id, healthy) is WorkflowStatus.COMPLETED
    assert fed == ["phase_10", "phase_50", "phase_100"]
    assert simulator.capacity() == {f"gpu-{n}": "spot" for n in range(4)}
    with env.factory() as session:
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        assert optimization.status is OptimizationStatus.COMPLETED
        assert optimization.progress == 100
        assert optimization.actual_savings is not None
        assert optimization.actual_savings > Decimal("1000")
        steps = session.scalars(
            select(WorkflowStep)
            .where(WorkflowStep.workflow_execution_id == rollout_id)
            .order_by(WorkflowStep.step_order)
        ).all()
        assert [s.step_name for s in steps] == [
            "start_optimization",
            "phase_10",
            "phase_50",
            "phase_100",
            "complete_optimization",
        ]
        assert all(s.status is StepStatus.COMPLETED for s in steps)
        assert all(v["verdict"] == "pass" for s in steps[1:4] for v in s.output_data["gate"]["verdicts"])
        gates = [s.output_data for s in steps[1:4]]
        assert [g["control_source"] for g in gates] == ["concurrent", "concurrent", "previous_phase"]
        for gate in gates:
            (verdict,) = gate["gate"]["verdicts"]
            assert verdict["changed"]["sample_size"] >= 60
            assert verdict["control"]["sample_size"] >= 60
            assert all("p_value" in f for f in verdict["findings"])
        report = session.scalar(select(WorkflowArtifact).where(WorkflowArtifact.workflow_execution_id == analysis_id))
        assert report is not None
        assert report.artifact_name == "spot-analysis.json"
    with env.factory() as session:  # the fleet lock was taken for the rollout and released at its end
        locks = [
            e.event_type
            for e in session.scalars(
                select(Event)
                .where(Event.agent_id == env.cost_agent_id, Event.event_type.like("agent.lock_%"))
                .order_by(Event.created_at)
            )
        ]
    assert locks == ["agent.lock_acquired", "agent.lock_released"]
    progress = [e.data["after"]["progress"] for e in events_of(env, "optimization.progress")]
    assert progress == sorted(progress)
    assert [e.event_type for e in events_of(env, "optimization.")][-1] == "optimization.completed"


def test_spot_rollout_is_stopped_by_a_regression_at_a_later_phase_and_undone_in_reverse(env: Env) -> None:
    _, optimization_id = approved_spot_migration(env)
    undo_order: list[str] = []

    def traffic(phase: str, started: datetime) -> None:
        degraded = phase == "phase_50"
        profile = replace(Traffic(), overall_factor=0.8, hallucination_rate=0.25) if degraded else Traffic()
        phase_traffic(env, optimization_id, started, profile, Traffic(), f"t-{phase}")

    class RecordingSimulator(SimulatorExecutor):
        def undo(self, phase: Phase, idempotency_key: str) -> dict[str, Any]:
            undo_order.append(phase.name)
            return super().undo(phase, idempotency_key)

    runner = build_runner(env.factory, env.data_dir)
    simulator = RecordingSimulator(env.data_dir / "fleet2.json")
    runner.register(make_rollout(lambda context: simulator))
    rollout_id = runner.create(
        "spot_migration_rollout",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"optimization_id": str(optimization_id), "gate": FAST_GATE},
        actor=OPERATOR,
    )
    assert drive(env, runner, rollout_id, traffic) is WorkflowStatus.FAILED
    assert undo_order == ["phase_50", "phase_10"]
    assert set(simulator.capacity().values()) == {"on_demand"}
    with env.factory() as session:
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        assert optimization.status is OptimizationStatus.ROLLED_BACK
        recommendation = session.get(Recommendation, optimization.recommendation_id)
        assert recommendation is not None
        assert recommendation.status is RecommendationStatus.ROLLED_BACK
        steps = {
            s.step_name: s
            for s in session.scalars(select(WorkflowStep).where(WorkflowStep.workflow_execution_id == rollout_id))
        }
        assert steps["phase_10"].status is StepStatus.COMPLETED
        assert steps["phase_50"].status is StepStatus.FAILED
        assert steps["phase_50"].error_details is not None
        assert steps["phase_50"].error_details["details"]["undone_phases"] == ["phase_50", "phase_10"]
        assert steps["phase_100"].status is StepStatus.SKIPPED
        assert steps["complete_optimization"].status is StepStatus.SKIPPED
        alert = session.scalar(select(WorkflowArtifact).where(WorkflowArtifact.workflow_execution_id == rollout_id))
        assert alert is not None
        assert alert.artifact_name == "phase_50-quality-gate.json"
    with env.factory() as session:  # released after a failed rollout too
        released = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.agent_id == env.cost_agent_id, Event.event_type == "agent.lock_released")
        )
    assert released == 1
    rolled = events_of(env, "optimization.rolled_back")
    assert rolled[-1].data["actor"]["name"] == "system:rollout"
    assert "phase_50" in rolled[-1].data["reason"]


def test_a_second_rollout_of_the_same_fleet_waits_for_the_lock(env: Env) -> None:
    _, optimization_id = approved_spot_migration(env)
    with unit_of_work(env.factory) as session:  # another cost agent is moving this fleet
        other = Agent(type=AgentType.COST, name=f"other-{uuid.uuid4().hex[:6]}")
        session.add(other)
        session.flush()
        agent_state.acquire_lock(
            session,
            Principal(role=Role.AGENT, name="other", agent_id=other.id),
            other.id,
            fleet_lock(env.customer_id),
            None,
        )
    runner = build_runner(env.factory, env.data_dir)
    rollout_id = runner.create(
        "spot_migration_rollout",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"optimization_id": str(optimization_id)},
        actor=OPERATOR,
    )
    assert runner.run(rollout_id, OPERATOR) is WorkflowStatus.FAILED
    with env.factory() as session:
        start = session.scalar(
            select(WorkflowStep).where(
                WorkflowStep.workflow_execution_id == rollout_id, WorkflowStep.step_name == "start_optimization"
            )
        )
        assert start is not None
        assert start.retry_count == 0  # a held lock is not retried blindly
        assert start.error_details is not None
        assert str(other.id) in json.dumps(start.error_details)
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        assert optimization.status is OptimizationStatus.QUEUED  # nothing was started


def create_scaling_decision(runner: WorkflowRunner, env: Env) -> uuid.UUID:
    """A scaling decision over the last 40 minutes of the customer's utilization, as the operator."""
    return runner.create(
        "scaling_decision",
        customer_id=env.customer_id,
        agent_id=env.resource_agent_id,
        input_data={"window_minutes": 40},
        actor=OPERATOR,
    )


def test_scaling_decision_from_metric_history_records_event_and_recommendation(env: Env) -> None:
    runner = build_runner(env.factory, env.data_dir)
    for n in range(3):
        add_utilization(env, f"node-{n}", "g5.2xlarge", [92.0, 94.0, 91.0, 95.0, 93.0, 96.0], timedelta(minutes=5))
    up_id = create_scaling_decision(runner, env)
    assert runner.run(up_id, OPERATOR) is WorkflowStatus.COMPLETED
    with env.factory() as session:
        event = session.scalar(select(ScalingEvent).where(ScalingEvent.workflow_execution_id == up_id))
        assert event is not None
        assert (event.event_type, event.success) == ("scale_up", True)
        assert event.before_state["instance_count"] == 3
        # Priced from the instance type the rows carry (g5.2xlarge on demand: $1.212/h x 730 h).
        assert event.after_state == {"instance_count": 4, "added_monthly_cost": 884.76}
        assert event.duration_seconds == 0.0
    # Right after, the cool-down holds the fleet even if utilization collapses.
    again = create_scaling_decision(runner, env)
    runner.run(again, OPERATOR)
    with env.factory() as session:
        decision = session.scalar(
            select(WorkflowStep).where(WorkflowStep.workflow_execution_id == again, WorkflowStep.step_name == "decide")
        )
        assert decision is not None
        assert decision.output_data["action"] == "none"
        assert "cooling down" in decision.output_data["reason"]
        count = session.scalar(
            select(func.count()).select_from(ScalingEvent).where(ScalingEvent.customer_id == env.customer_id)
        )
        assert count == 1


def test_scale_down_needs_approval(env: Env) -> None:
    runner = build_runner(env.factory, env.data_dir)
    for n in range(3):
        add_utilization(env, f"idle-{n}", "g5.2xlarge", [12.0, 10.0, 15.0, 11.0, 9.0, 14.0], timedelta(minutes=5))
    down_id = create_scaling_decision(runner, env)
    assert runner.run(down_id, OPERATOR) is WorkflowStatus.COMPLETED
    with env.factory() as session:
        event = session.scalar(select(ScalingEvent).where(ScalingEvent.workflow_execution_id == down_id))
        assert event is not None
        assert (event.event_type, event.success, event.metadata_["status"]) == (
            "scale_down",
            False,
            "awaiting_approval",
        )
        recommendation = session.get(Recommendation, uuid.UUID(event.metadata_["recommendation_id"]))
        assert recommendation is not None
        assert (recommendation.type, recommendation.status) == ("scale_down", RecommendationStatus.PENDING)
        # Removing one g5.2xlarge (on demand) saves its price: $1.212/h x 730 h.
        assert recommendation.estimated_savings == Decimal("884.76")
        assert recommendation.data["prices"]["formula"] == "hourly price x 730 h/month"


def _rollout(env: Env, optimization_id: uuid.UUID, simulator: SimulatorExecutor, **gate: Any) -> tuple[Any, uuid.UUID]:
    runner = build_runner(env.factory, env.data_dir)
    runner.register(make_rollout(lambda context: simulator))
    rollout_id = runner.create(
        "spot_migration_rollout",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"optimization_id": str(optimization_id), "gate": {**FAST_GATE, **gate}},
        actor=OPERATOR,
    )
    return runner, rollout_id


def test_a_regression_of_the_ten_percent_arm_against_its_control_undoes_it_and_rolls_back(env: Env) -> None:
    _, optimization_id = approved_spot_migration(env)
    simulator = SimulatorExecutor(env.data_dir / "fleet-10.json")
    runner, rollout_id = _rollout(env, optimization_id, simulator)
    worse = replace(Traffic(), overall_factor=0.8, hallucination_rate=0.25)
    status = drive(
        env,
        runner,
        rollout_id,
        lambda phase, started: phase_traffic(env, optimization_id, started, worse, Traffic(), f"bad-{phase}"),
    )
    assert status is WorkflowStatus.FAILED
    assert set(simulator.capacity().values()) == {"on_demand"}
    with env.factory() as session:
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        assert optimization.status is OptimizationStatus.ROLLED_BACK
        phase_10 = session.scalar(
            select(WorkflowStep).where(
                WorkflowStep.workflow_execution_id == rollout_id, WorkflowStep.step_name == "phase_10"
            )
        )
        assert phase_10 is not None
        assert phase_10.error_details is not None
        gate = phase_10.error_details["details"]["gate"]
        assert gate["undone_phases"] == ["phase_10"]
        (verdict,) = gate["verdicts"]
        assert verdict["control_source"] == "concurrent"
        assert (
            verdict["changed"]["components"]["overall_quality_score"]["mean"]
            < (verdict["control"]["components"]["overall_quality_score"]["mean"])
        )


def test_a_drift_that_moves_both_arms_alike_is_not_a_regression(env: Env) -> None:
    """The afternoon is slower and a little worse for everyone: the control moves too, so the change passes."""
    _, optimization_id = approved_spot_migration(env)
    simulator = SimulatorExecutor(env.data_dir / "fleet-drift.json")
    runner, rollout_id = _rollout(env, optimization_id, simulator)
    afternoon = replace(Traffic(), overall_factor=0.85, latency_median_ms=1200.0, hallucination_rate=0.08)

    def drifting(phase: str, started: datetime) -> None:
        profile = Traffic() if phase == "phase_10" else afternoon  # the drift starts during the rollout
        phase_traffic(env, optimization_id, started, profile, profile, f"d-{phase}")

    assert drive(env, runner, rollout_id, drifting) is WorkflowStatus.COMPLETED


def test_too_little_traffic_by_the_deadline_pauses_and_resume_goes_on(env: Env) -> None:
    _, optimization_id = approved_spot_migration(env)
    simulator = SimulatorExecutor(env.data_dir / "fleet-pause.json")
    runner, rollout_id = _rollout(env, optimization_id, simulator, deadline_seconds=1)
    status = runner.run(rollout_id, OPERATOR)
    assert status is WorkflowStatus.WAITING
    time.sleep(1.2)
    assert runner.run(rollout_id, OPERATOR) is WorkflowStatus.PAUSED  # never a silent pass
    with env.factory() as session:
        paused = session.get(WorkflowExecution, rollout_id)
        assert paused is not None
        assert paused.metadata_["paused"]["phase"] == "phase_10"
        assert "not enough traffic" in paused.metadata_["paused"]["reason"]
    assert simulator.capacity()  # phase 10 stays applied while a human decides
    assert runner.resume(rollout_id, Principal.operator(), "traffic is low on Sundays") is WorkflowStatus.RUNNING
    assert runner.run(rollout_id, OPERATOR) is WorkflowStatus.WAITING  # on to phase 50, which waits again
    with env.factory() as session:
        steps = {
            s.step_name: s
            for s in session.scalars(select(WorkflowStep).where(WorkflowStep.workflow_execution_id == rollout_id))
        }
        assert steps["phase_10"].status is StepStatus.COMPLETED
        assert steps["phase_10"].output_data["gate"]["verdict"] == "passed_by_human"
        assert steps["phase_10"].output_data["gate"]["decision"]["note"] == "traffic is low on Sundays"
        assert steps["phase_50"].status is StepStatus.WAITING
