"""The workflow API over HTTP: spot migration from analysis to rollout, scaling decisions, reading and tenancy."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import insert

from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.models import AgentType, ResourceMetric, ResourceType
from optiinfra.quality.simulation import Traffic
from tests.api.conftest import AgentHandle, Server, Tenant
from tests.workflows.test_spot_and_scaling import quality_rows


def add_fleet(api_server: Server, tenant: Tenant, agent_id: uuid.UUID, hours: int, levels: list[float]) -> None:
    rng = np.random.default_rng(3)
    now = datetime.now(UTC)
    rows = [
        {
            "agent_id": agent_id,
            "customer_id": tenant.id,
            "instance_id": f"gpu-{n}",
            "resource_type": ResourceType.GPU,
            "metric_name": "utilization",
            "metric_value": float(np.clip(rng.normal(level, 2.0), 0, 100)),
            "unit": "percent",
            "timestamp": now - timedelta(minutes=5 * (hours * 12 - i)),
            "metadata": {"instance_type": "g5.2xlarge"},
        }
        for n, level in enumerate(levels)
        for i in range(hours * 12)
    ]
    with api_server.engine.begin() as connection:
        connection.execute(insert(ResourceMetric), rows)


@pytest.fixture
def cost_agent(make_agent, tenant: Tenant) -> AgentHandle:  # type: ignore[no-untyped-def]
    return make_agent(AgentType.COST, serves=[tenant])


@pytest.fixture
def resource_agent(make_agent, tenant: Tenant) -> AgentHandle:  # type: ignore[no-untyped-def]
    return make_agent(AgentType.RESOURCE, serves=[tenant])


def test_spot_migration_analysis_approval_and_rollout_over_the_api(
    api_server: Server,
    tenant: Tenant,
    other_tenant: Tenant,
    cost_agent: AgentHandle,
    resource_agent: AgentHandle,
    http: httpx.Client,
) -> None:
    add_fleet(api_server, tenant, resource_agent.agent_id, hours=30, levels=[60, 62, 58])
    started = cost_agent.client.analyze_spot_migration(tenant.id, lookback_days=2)
    assert started.status == "pending"  # 202: a worker runs it
    analysis = cost_agent.client.wait_for_workflow(started.id, timeout=60)
    assert analysis.status == "completed"
    assert [s.step_name for s in analysis.steps] == [
        "collect_utilization",
        "analyze_candidates",
        "create_recommendation",
    ]
    assert analysis.steps[2].output_data.get("recommendation_id"), analysis.steps[1].output_data
    recommendation_id = uuid.UUID(analysis.steps[2].output_data["recommendation_id"])
    recommendation = tenant.client.get_recommendation(recommendation_id)
    assert recommendation.type == "spot_migration"
    assert recommendation.data["instances"] == ["gpu-0", "gpu-1", "gpu-2"]
    assert recommendation.estimated_savings is not None
    assert recommendation.estimated_savings > 0

    report = analysis.artifacts[0]
    download = http.get(
        f"/api/v1/workflows/{analysis.id}/artifacts/{report.id}",
        headers={"Authorization": f"Bearer {tenant.customer.api_key}"},
    )
    assert download.status_code == 200
    assert download.json()["candidates"][0]["instance_id"] == "gpu-0"
    hidden = http.get(
        f"/api/v1/workflows/{analysis.id}/artifacts/{report.id}",
        headers={"Authorization": f"Bearer {other_tenant.customer.api_key}"},
    )
    assert hidden.status_code == 404

    decision = tenant.client.approve(recommendation_id, "go")
    assert decision.optimization is not None
    # No traffic reaches the changed instances: the first phase waits for evidence, then asks a human.
    rollout = cost_agent.client.roll_out_spot_migration(
        decision.optimization.id, bake_seconds=0, min_samples=20, deadline_seconds=2, poll_seconds=1
    )
    paused = cost_agent.client.wait_for_workflow(rollout.id, timeout=60)
    assert paused.status == "paused", paused.error_details
    assert paused.paused_for is not None
    assert paused.paused_for["phase"] == "phase_10"
    assert paused.paused_for["samples"] == {}
    with pytest.raises(ApiError) as agents_do_not_decide:
        cost_agent.client.resume_workflow(rollout.id)
    assert agents_do_not_decide.value.status_code == 403
    with pytest.raises(ApiError) as again:
        cost_agent.client.roll_out_spot_migration(decision.optimization.id)
    assert again.value.status_code == 409
    aborted = tenant.client.abort_workflow(rollout.id)
    assert aborted.status == "cancelling"
    ended = tenant.client.wait_for_workflow(rollout.id, timeout=60)
    assert ended.status == "cancelled"
    assert ended.error_details is not None
    assert ended.error_details["undone"]["undone_phases"] == ["phase_10"]
    assert cost_agent.client.get_optimization(decision.optimization.id).status == "rolled_back"

    listed = tenant.client.list_workflows(limit=10).items
    assert {w.id for w in listed} >= {analysis.id, rollout.id}
    assert other_tenant.client.list_workflows().items == []
    with pytest.raises(ApiError) as missing:
        other_tenant.client.get_workflow(rollout.id)
    assert missing.value.status_code == 404


def test_scaling_decision_over_the_api(api_server: Server, tenant: Tenant, resource_agent: AgentHandle) -> None:
    add_fleet(api_server, tenant, resource_agent.agent_id, hours=1, levels=[93, 95])
    run = resource_agent.client.wait_for_workflow(resource_agent.client.decide_scaling(tenant.id, window_minutes=30).id)
    assert run.status == "completed"
    decision = next(s for s in run.steps if s.step_name == "decide").output_data
    assert decision["action"] == "scale_up"
    assert decision["target_instances"] == decision["current_instances"] + 1


def test_workflows_run_on_the_right_kind_of_agent(tenant: Tenant, resource_agent: AgentHandle) -> None:
    with pytest.raises(ApiError) as refused:
        resource_agent.client.analyze_spot_migration(tenant.id)
    assert refused.value.status_code == 422
    assert "cost agent" in refused.value.message


def test_customers_cannot_start_workflows(tenant: Tenant) -> None:
    with pytest.raises(ApiError) as refused:
        tenant.client.analyze_spot_migration(tenant.id)
    assert refused.value.status_code == 403


def test_cancelling_a_finished_workflow_changes_nothing(
    api_server: Server, tenant: Tenant, resource_agent: AgentHandle, operator: OptiInfraClient
) -> None:
    add_fleet(api_server, tenant, resource_agent.agent_id, hours=1, levels=[50])
    run = resource_agent.client.wait_for_workflow(resource_agent.client.decide_scaling(tenant.id, window_minutes=30).id)
    assert operator.cancel_workflow(run.id).status == "completed"


def test_cancelling_a_waiting_rollout_is_honoured_at_once_and_undoes_it(
    api_server: Server, tenant: Tenant, cost_agent: AgentHandle, resource_agent: AgentHandle, operator: OptiInfraClient
) -> None:
    add_fleet(api_server, tenant, resource_agent.agent_id, hours=30, levels=[60, 62, 58])
    analysis = cost_agent.client.wait_for_workflow(
        cost_agent.client.analyze_spot_migration(tenant.id, lookback_days=2).id
    )
    recommendation_id = uuid.UUID(analysis.steps[2].output_data["recommendation_id"])
    decision = tenant.client.approve(recommendation_id, "go")
    assert decision.optimization is not None
    rollout = cost_agent.client.roll_out_spot_migration(decision.optimization.id)  # default bake: 10 minutes
    deadline = time.monotonic() + 60
    while (run := operator.get_workflow(rollout.id)).status != "waiting":
        assert time.monotonic() < deadline, run.status
        time.sleep(0.2)
    assert run.waiting_for is not None
    assert run.waiting_for["phase"] == "phase_10"
    assert run.waiting_for["until"] >= run.waiting_for["bake_until"]  # the next look is after the bake time
    assert operator.cancel_workflow(rollout.id).status == "cancelling"
    ended = operator.wait_for_workflow(rollout.id, timeout=30)  # not ten minutes: the cancel is not queued behind
    assert ended.status == "cancelled"
    assert ended.error_details is not None
    assert ended.error_details["undone"] == {"undone_phases": ["phase_10"], "rolled_back": True}
    assert cost_agent.client.get_optimization(decision.optimization.id).status == "rolled_back"


def test_a_ten_percent_arm_that_regresses_against_its_control_is_rolled_back_by_the_servers_worker(
    api_server: Server, tenant: Tenant, cost_agent: AgentHandle, resource_agent: AgentHandle, operator: OptiInfraClient
) -> None:
    add_fleet(api_server, tenant, resource_agent.agent_id, hours=30, levels=[60, 62, 58])
    started = cost_agent.client.analyze_spot_migration(tenant.id, lookback_days=2)
    analysis = cost_agent.client.wait_for_workflow(started.id)
    recommendation_id = uuid.UUID(analysis.steps[2].output_data["recommendation_id"])
    decision = tenant.client.approve(recommendation_id, "go")
    assert decision.optimization is not None
    optimization_id = decision.optimization.id
    rollout = cost_agent.client.roll_out_spot_migration(
        optimization_id, bake_seconds=1, min_samples=60, deadline_seconds=120, poll_seconds=1
    )
    deadline = time.monotonic() + 60
    while (run := operator.get_workflow(rollout.id)).status != "waiting":
        assert time.monotonic() < deadline, run.status
        time.sleep(0.2)
    assert run.waiting_for is not None
    phase_start = datetime.fromisoformat(run.waiting_for["started_at"])
    time.sleep(1)
    span = (datetime.now(UTC) - phase_start).total_seconds()
    worse = replace(Traffic(), overall_factor=0.8, hallucination_rate=0.25)
    for arm, profile, tag in (
        ("changed", worse, {"optimization_id": str(optimization_id)}),
        ("control", Traffic(), {}),
    ):
        rows = quality_rows(None, 100, profile, phase_start, tag, f"api-{arm}-{uuid.uuid4().hex[:6]}")  # type: ignore[arg-type]
        for i, row in enumerate(rows):
            row["timestamp"] = (phase_start + timedelta(seconds=span * (i + 0.5) / len(rows))).isoformat()
        cost_agent.client.ingest_quality_metrics(rows, customer_id=tenant.id)
    ended = operator.wait_for_workflow(rollout.id, timeout=60)
    assert ended.status == "failed"
    assert ended.error_details is not None
    assert ended.error_details["details"]["undone_phases"] == ["phase_10"]
    (verdict,) = ended.error_details["details"]["gate"]["verdicts"]
    assert verdict["verdict"] == "regression"
    assert verdict["control_source"] == "concurrent"
    assert cost_agent.client.get_optimization(optimization_id).status == "rolled_back"
