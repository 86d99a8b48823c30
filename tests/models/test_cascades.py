"""Deleting a parent removes or detaches its children the same way through raw SQL and through the ORM."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, selectinload

from optiinfra.models import (
    Agent,
    AgentCapability,
    AgentConfig,
    AgentMetric,
    AgentState,
    Approval,
    Base,
    Customer,
    Event,
    Optimization,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    Recommendation,
    ResourceMetric,
    ScalingEvent,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStep,
)
from tests.factories import (
    make_agent,
    make_agent_capability,
    make_agent_config,
    make_agent_metric,
    make_agent_state,
    make_approval,
    make_customer,
    make_event,
    make_optimization,
    make_quality_baseline,
    make_quality_metric,
    make_quality_regression,
    make_recommendation,
    make_resource_metric,
    make_scaling_event,
    make_workflow_artifact,
    make_workflow_execution,
    make_workflow_step,
)

# How the parent is deleted: a raw SQL DELETE, session.delete() with no child collection loaded, or
# session.delete() after loading the child collections (the ORM then handles the loaded children itself).
DELETE_MODES = ["sql", "orm", "orm_with_children_loaded"]


def row_exists(session: Session, model: type[Base], row_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(func.count()).select_from(model).where(model.id == row_id)))  # type: ignore[attr-defined]


def delete_through(session: Session, mode: str, model: type[Base], row_id: uuid.UUID, *loads: object) -> None:
    table = model.__tablename__
    if mode == "sql":
        # The table name comes from the model, never from input; the id is a bound parameter.
        session.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
    else:
        session.expire_all()
        options = [selectinload(load) for load in loads] if mode == "orm_with_children_loaded" else []
        parent = session.scalars(select(model).where(model.id == row_id).options(*options)).one()  # type: ignore[attr-defined]
        session.delete(parent)
        session.flush()
    session.expire_all()


@dataclass
class CustomerRows:
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    children: dict[type[Base], uuid.UUID]


def make_customer_with_rows_in_every_child_table(session: Session) -> CustomerRows:
    customer = make_customer(session)
    agent = make_agent(session)
    recommendation = make_recommendation(session, customer=customer, agent=agent)
    execution = make_workflow_execution(session, customer=customer, agent=agent)
    step = make_workflow_step(session, execution=execution)
    baseline = make_quality_baseline(session, customer=customer, agent=agent)
    children: dict[type[Base], uuid.UUID] = {
        Event: make_event(session, customer=customer, agent=agent).id,
        Recommendation: recommendation.id,
        Approval: make_approval(session, recommendation=recommendation).id,
        Optimization: make_optimization(session, recommendation=recommendation).id,
        WorkflowExecution: execution.id,
        WorkflowStep: step.id,
        WorkflowArtifact: make_workflow_artifact(session, step=step).id,
        ResourceMetric: make_resource_metric(session, customer=customer, agent=agent).id,
        ScalingEvent: make_scaling_event(session, customer=customer, agent=agent, workflow_execution=execution).id,
        QualityMetric: make_quality_metric(session, customer=customer, agent=agent).id,
        QualityBaseline: baseline.id,
        QualityRegression: make_quality_regression(session, baseline=baseline, workflow_execution=execution).id,
    }
    return CustomerRows(customer_id=customer.id, agent_id=agent.id, children=children)


def surviving(session: Session, rows: dict[type[Base], uuid.UUID]) -> list[str]:
    """The model names of the rows that still exist."""
    return [model.__name__ for model, row_id in rows.items() if row_exists(session, model, row_id)]


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_customer_removes_its_rows_in_every_child_table(session: Session, mode: str) -> None:
    rows = make_customer_with_rows_in_every_child_table(session)
    other = make_customer_with_rows_in_every_child_table(session)

    delete_through(
        session,
        mode,
        Customer,
        rows.customer_id,
        Customer.events,
        Customer.recommendations,
        Customer.optimizations,
        Customer.workflow_executions,
        Customer.resource_metrics,
        Customer.scaling_events,
        Customer.quality_metrics,
        Customer.quality_baselines,
        Customer.quality_regressions,
    )

    assert not row_exists(session, Customer, rows.customer_id)
    assert len(rows.children) == 12
    assert surviving(session, rows.children) == []
    # Agents are not owned by a customer, and another customer's rows are untouched.
    assert row_exists(session, Agent, rows.agent_id)
    assert surviving(session, other.children) == [model.__name__ for model in other.children]


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_agent_keeps_its_events_with_null_agent_id(session: Session, mode: str) -> None:
    customer_id = make_customer(session).id
    agent_id = make_agent(session).id
    event_ids = sorted(make_event(session, customer_id=customer_id, agent_id=agent_id).id for _ in range(2))
    recommendation = make_recommendation(session, customer_id=customer_id, agent_id=agent_id)
    owned: dict[type[Base], uuid.UUID] = {
        Recommendation: recommendation.id,
        Optimization: make_optimization(session, recommendation=recommendation).id,
        AgentConfig: make_agent_config(session, agent_id=agent_id).id,
        AgentState: make_agent_state(session, agent_id=agent_id).id,
        AgentCapability: make_agent_capability(session, agent_id=agent_id).id,
        AgentMetric: make_agent_metric(session, agent_id=agent_id).id,
    }

    delete_through(session, mode, Agent, agent_id, Agent.events)

    assert not row_exists(session, Agent, agent_id)
    events = session.execute(
        text("SELECT id, agent_id, customer_id FROM events WHERE id = ANY(:ids) ORDER BY id"), {"ids": event_ids}
    ).all()
    assert [tuple(row) for row in events] == [(event_id, None, customer_id) for event_id in event_ids]
    assert surviving(session, owned) == []
    assert row_exists(session, Customer, customer_id)


def test_deleting_agent_with_every_collection_loaded_keeps_events_and_deletes_owned_rows(
    session: Session,
) -> None:
    event = make_event(session)
    event_id, agent_id = event.id, event.agent_id
    state_id = make_agent_state(session, agent_id=agent_id).id
    recommendation_id = make_recommendation(session, agent_id=agent_id).id

    delete_through(
        session,
        "orm_with_children_loaded",
        Agent,
        agent_id,
        Agent.events,
        Agent.state,
        Agent.recommendations,
        Agent.configs,
        Agent.agent_capabilities,
        Agent.metrics,
    )

    assert row_exists(session, Event, event_id)
    assert session.scalar(select(Event.agent_id).where(Event.id == event_id)) is None
    assert not row_exists(session, AgentState, state_id)
    assert not row_exists(session, Recommendation, recommendation_id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_workflow_execution_detaches_set_null_rows_and_deletes_steps_and_artifacts(
    session: Session, mode: str
) -> None:
    customer = make_customer(session)
    agent = make_agent(session)
    execution = make_workflow_execution(session, customer=customer, agent=agent)
    execution_id = execution.id
    step = make_workflow_step(session, execution=execution)
    deleted: dict[type[Base], uuid.UUID] = {
        WorkflowStep: step.id,
        WorkflowArtifact: make_workflow_artifact(session, step=step).id,
    }
    execution_artifact_id = make_workflow_artifact(session, execution=execution).id
    baseline = make_quality_baseline(session, customer=customer, agent=agent)
    detached: dict[type[Base], uuid.UUID] = {
        ScalingEvent: make_scaling_event(session, customer=customer, agent=agent, workflow_execution=execution).id,
        QualityRegression: make_quality_regression(session, baseline=baseline, workflow_execution=execution).id,
        AgentState: make_agent_state(session, agent=agent, current_workflow_id=execution_id).id,
    }

    delete_through(
        session,
        mode,
        WorkflowExecution,
        execution_id,
        WorkflowExecution.steps,
        WorkflowExecution.artifacts,
        WorkflowExecution.scaling_events,
        WorkflowExecution.quality_regressions,
        WorkflowExecution.current_for_states,
    )

    assert not row_exists(session, WorkflowExecution, execution_id)
    assert surviving(session, deleted) == []
    assert not row_exists(session, WorkflowArtifact, execution_artifact_id)
    assert surviving(session, detached) == ["ScalingEvent", "QualityRegression", "AgentState"]
    references = {
        "ScalingEvent": select(ScalingEvent.workflow_execution_id).where(ScalingEvent.id == detached[ScalingEvent]),
        "QualityRegression": select(QualityRegression.workflow_execution_id).where(
            QualityRegression.id == detached[QualityRegression]
        ),
        "AgentState": select(AgentState.current_workflow_id).where(AgentState.id == detached[AgentState]),
    }
    assert {name: session.scalar(query) for name, query in references.items()} == dict.fromkeys(references)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_workflow_step_deletes_its_artifacts_but_not_the_execution_ones(session: Session, mode: str) -> None:
    execution = make_workflow_execution(session)
    execution_id = execution.id
    step = make_workflow_step(session, execution=execution)
    step_id = step.id
    step_artifact_id = make_workflow_artifact(session, step=step).id
    execution_artifact_id = make_workflow_artifact(session, execution=execution).id

    delete_through(session, mode, WorkflowStep, step_id, WorkflowStep.artifacts)

    assert not row_exists(session, WorkflowStep, step_id)
    assert not row_exists(session, WorkflowArtifact, step_artifact_id)
    assert row_exists(session, WorkflowArtifact, execution_artifact_id)
    assert row_exists(session, WorkflowExecution, execution_id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_baseline_deletes_its_regressions(session: Session, mode: str) -> None:
    baseline = make_quality_baseline(session)
    baseline_id, customer_id = baseline.id, baseline.customer_id
    regression_ids = [make_quality_regression(session, baseline=baseline).id for _ in range(2)]
    other_regression_id = make_quality_regression(session).id

    delete_through(session, mode, QualityBaseline, baseline_id, QualityBaseline.regressions)

    assert not row_exists(session, QualityBaseline, baseline_id)
    assert [row_exists(session, QualityRegression, row_id) for row_id in regression_ids] == [False, False]
    assert row_exists(session, QualityRegression, other_regression_id)
    assert row_exists(session, Customer, customer_id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_recommendation_deletes_its_approvals_and_optimizations(session: Session, mode: str) -> None:
    recommendation = make_recommendation(session)
    recommendation_id, customer_id = recommendation.id, recommendation.customer_id
    children: dict[type[Base], uuid.UUID] = {
        Approval: make_approval(session, recommendation=recommendation).id,
        Optimization: make_optimization(session, recommendation=recommendation).id,
    }

    delete_through(
        session, mode, Recommendation, recommendation_id, Recommendation.approvals, Recommendation.optimizations
    )

    assert surviving(session, children) == []
    assert row_exists(session, Customer, customer_id)
