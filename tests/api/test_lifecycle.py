"""The recommendation → approval → optimization lifecycle over HTTP: every allowed and refused transition."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import text

from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.enums import OptimizationStatus, RecommendationStatus
from optiinfra.recommendations.states import OPTIMIZATION_TRANSITIONS, RECOMMENDATION_TRANSITIONS
from tests.api.conftest import AgentHandle, Server, Tenant


def propose(agent: AgentHandle, tenant: Tenant, **overrides: object) -> uuid.UUID:
    values: dict[str, object] = {
        "confidence_score": 0.8,
        "estimated_savings": Decimal("1200.50"),
        "description": "Four steady nodes can move to spot.",
    }
    values.update(overrides)
    recommendation = agent.client.create_recommendation(tenant.id, "spot_migration", "Move to spot", **values)  # type: ignore[arg-type]
    return recommendation.id


# Each state is reached by a sequence of actions from a fresh recommendation.
Action = Callable[[AgentHandle, Tenant, uuid.UUID, uuid.UUID | None], object]


def approve(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    return tenant.client.approve(rec, "go")


def reject(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    return tenant.client.reject(rec, "no")


def start(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    assert opt is not None
    return agent.client.start_optimization(opt)


def complete(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    assert opt is not None
    return agent.client.complete_optimization(opt, actual_savings=Decimal("1100.00"), result={"phases": 3})


def fail(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    assert opt is not None
    return agent.client.fail_optimization(opt, "spot capacity unavailable")


def rollback(agent: AgentHandle, tenant: Tenant, rec: uuid.UUID, opt: uuid.UUID | None) -> object:
    assert opt is not None
    return tenant.client.rollback_optimization(opt, "quality dropped")


PATHS: dict[RecommendationStatus, list[Action]] = {
    RecommendationStatus.PENDING: [],
    RecommendationStatus.APPROVED: [approve],
    RecommendationStatus.REJECTED: [reject],
    RecommendationStatus.EXECUTING: [approve, start],
    RecommendationStatus.COMPLETED: [approve, start, complete],
    RecommendationStatus.FAILED: [approve, start, fail],
    RecommendationStatus.ROLLED_BACK: [approve, start, complete, rollback],
}

ACTIONS: dict[str, tuple[Action, RecommendationStatus, OptimizationStatus | None]] = {
    "approve": (approve, RecommendationStatus.APPROVED, None),
    "reject": (reject, RecommendationStatus.REJECTED, None),
    "start": (start, RecommendationStatus.EXECUTING, OptimizationStatus.EXECUTING),
    "complete": (complete, RecommendationStatus.COMPLETED, OptimizationStatus.COMPLETED),
    "fail": (fail, RecommendationStatus.FAILED, OptimizationStatus.FAILED),
    "rollback": (rollback, RecommendationStatus.ROLLED_BACK, OptimizationStatus.ROLLED_BACK),
}


def reach(agent: AgentHandle, tenant: Tenant, state: RecommendationStatus) -> tuple[uuid.UUID, uuid.UUID | None]:
    rec = propose(agent, tenant)
    opt: uuid.UUID | None = None
    for action in PATHS[state]:
        result = action(agent, tenant, rec, opt)
        optimization = getattr(result, "optimization", None)
        if optimization is not None:
            opt = optimization.id
    return rec, opt


def allowed(state: RecommendationStatus, action: str, opt_status: OptimizationStatus | None) -> bool:
    _, target, opt_target = ACTIONS[action]
    if opt_target is None:
        return target in RECOMMENDATION_TRANSITIONS[state]
    if opt_status is None:
        return False
    return opt_target in OPTIMIZATION_TRANSITIONS[opt_status] and target in RECOMMENDATION_TRANSITIONS[state]


# Optimization actions need an optimization: there is none while pending or after a rejection.
CASES = [
    (state, action)
    for state in PATHS
    for action, (_, _, opt_target) in ACTIONS.items()
    if opt_target is None or state not in {RecommendationStatus.PENDING, RecommendationStatus.REJECTED}
]


@pytest.mark.parametrize(("state", "action"), CASES)
def test_every_transition_is_allowed_or_refused_by_the_table(
    state: RecommendationStatus, action: str, agent: AgentHandle, tenant: Tenant
) -> None:
    rec, opt = reach(agent, tenant, state)
    opt_status = agent.client.get_optimization(opt).status if opt else None
    perform, target, opt_target = ACTIONS[action]
    if allowed(state, action, opt_status):
        perform(agent, tenant, rec, opt)
        assert tenant.client.get_recommendation(rec).status == target
        if opt_target is not None:
            assert agent.client.get_optimization(opt).status == opt_target  # type: ignore[arg-type]
    else:
        with pytest.raises(ApiError) as refused:
            perform(agent, tenant, rec, opt)
        assert refused.value.status_code == 409
        assert refused.value.code == "invalid_transition"
        assert refused.value.details["current_status"] in {str(state), str(opt_status)}
        assert tenant.client.get_recommendation(rec).status == state


def test_walk_from_proposal_to_rollback_records_the_whole_story(agent: AgentHandle, tenant: Tenant) -> None:
    rec = propose(agent, tenant)
    decision = tenant.client.approve(rec, "Go ahead; watch quality.")
    assert decision.approval.approved_by == tenant.customer.email
    assert decision.recommendation.approved_at is not None
    assert decision.optimization is not None
    assert decision.optimization.status == OptimizationStatus.QUEUED
    opt = decision.optimization.id
    started = agent.client.start_optimization(opt)
    assert started.started_at is not None
    agent.client.report_progress(opt, 10, {"phase": "10%"})
    agent.client.report_progress(opt, 50, {"phase": "50%"})
    done = agent.client.complete_optimization(opt, actual_savings=Decimal("1100.00"), actual_improvement=Decimal("1.2"))
    assert (done.progress, done.actual_savings, done.result) == (100, Decimal("1100.00"), {"phase": "50%"})
    rolled = tenant.client.rollback_optimization(opt, "hallucination rate up")
    assert rolled.rolled_back_at is not None
    detail = tenant.client.get_recommendation(rec)
    assert detail.status == RecommendationStatus.ROLLED_BACK
    assert [a.status for a in detail.approvals] == ["approved"]

    events = tenant.client.list_events(limit=200).items
    story = [e.event_type for e in reversed(events) if e.data.get("subject", {}).get("recommendation_id") == str(rec)]
    assert story == [
        "recommendation.created",
        "recommendation.approved",
        "optimization.queued",
        "recommendation.executing",
        "optimization.executing",
        "recommendation.completed",
        "optimization.completed",
        "recommendation.rolled_back",
        "optimization.rolled_back",
    ]
    rollback_event = next(e for e in events if e.event_type == "optimization.rolled_back")
    assert rollback_event.data["before"]["status"] == "completed"
    assert rollback_event.data["after"]["status"] == "rolled_back"
    assert rollback_event.data["actor"]["role"] == "customer"
    assert rollback_event.data["reason"] == "hallucination rate up"


def test_rejection_records_an_approval_row_and_no_optimization(agent: AgentHandle, tenant: Tenant) -> None:
    rec = propose(agent, tenant)
    decision = tenant.client.reject(rec, "Not this quarter")
    assert decision.optimization is None
    detail = tenant.client.get_recommendation(rec)
    assert [(a.status, a.comment) for a in detail.approvals] == [("rejected", "Not this quarter")]
    assert detail.optimizations == []


def test_progress_never_goes_backwards(agent: AgentHandle, tenant: Tenant) -> None:
    _, opt = reach(agent, tenant, RecommendationStatus.EXECUTING)
    assert opt is not None
    agent.client.report_progress(opt, 60)
    with pytest.raises(ApiError) as refused:
        agent.client.report_progress(opt, 59)
    assert refused.value.status_code == 409
    assert refused.value.details == {"current_progress": 60, "requested_progress": 59}
    assert agent.client.report_progress(opt, 60).progress == 60


def test_progress_only_while_executing(agent: AgentHandle, tenant: Tenant) -> None:
    _, opt = reach(agent, tenant, RecommendationStatus.APPROVED)
    assert opt is not None
    with pytest.raises(ApiError) as refused:
        agent.client.report_progress(opt, 10)
    assert refused.value.status_code == 409


def test_operator_can_roll_back_on_behalf_of_the_system(
    agent: AgentHandle, tenant: Tenant, operator: OptiInfraClient
) -> None:
    _, opt = reach(agent, tenant, RecommendationStatus.EXECUTING)
    assert opt is not None
    assert operator.rollback_optimization(opt, "quality gate").status == OptimizationStatus.ROLLED_BACK


@pytest.mark.parametrize("decisions", [("approve", "approve"), ("approve", "reject"), ("reject", "approve")])
def test_concurrent_decisions_yield_exactly_one(
    decisions: tuple[str, str], agent: AgentHandle, tenant: Tenant, api_server: Server
) -> None:
    rec = propose(agent, tenant)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def decide(decision: str) -> None:
        with OptiInfraClient(api_server.base_url, tenant.customer.api_key) as client:
            barrier.wait()
            try:
                outcomes.append(client.decide(rec, decision))
            except ApiError as error:
                outcomes.append(error)

    threads = [threading.Thread(target=decide, args=(decision,)) for decision in decisions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    errors = [o for o in outcomes if isinstance(o, ApiError)]
    assert len(outcomes) == 2
    assert len(errors) == 1
    assert errors[0].status_code == 409
    with api_server.engine.connect() as connection:
        approvals = connection.execute(
            text("SELECT count(*) FROM approvals WHERE recommendation_id = :id"), {"id": rec}
        ).scalar_one()
        optimizations = connection.execute(
            text("SELECT count(*) FROM optimizations WHERE recommendation_id = :id"), {"id": rec}
        ).scalar_one()
    assert approvals == 1
    assert optimizations <= 1


def test_summary_counts_and_savings(agent: AgentHandle, tenant: Tenant) -> None:
    propose(agent, tenant, estimated_savings=Decimal("100.00"))
    _, _done = reach(agent, tenant, RecommendationStatus.COMPLETED)
    reach(agent, tenant, RecommendationStatus.ROLLED_BACK)
    summary = tenant.client.summary()
    assert summary.recommendations_by_status[RecommendationStatus.PENDING] == 1
    assert summary.recommendations_by_status[RecommendationStatus.COMPLETED] == 1
    assert summary.recommendations_by_status[RecommendationStatus.ROLLED_BACK] == 1
    assert summary.optimizations_by_status[OptimizationStatus.COMPLETED] == 1
    assert summary.estimated_savings_pending == Decimal("100.00")
    # The rolled-back optimization's savings are not realised.
    assert summary.actual_savings_realised == Decimal("1100.00")


def test_recommendation_for_unknown_customer_is_404(agent: AgentHandle) -> None:
    with pytest.raises(ApiError) as refused:
        agent.client.create_recommendation(uuid.uuid4(), "spot_migration", "x", confidence_score=0.5)
    assert refused.value.status_code == 404


def test_lists_filter_and_paginate_newest_first(agent: AgentHandle, tenant: Tenant) -> None:
    created = [propose(agent, tenant, priority="high" if i % 2 else "low") for i in range(7)]
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = tenant.client.list_recommendations(limit=3, cursor=cursor)
        seen.extend(item.id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(created))
    high = tenant.client.list_recommendations(priority="high").items
    assert {r.id for r in high} == set(created[1::2])
