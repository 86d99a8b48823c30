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
        session.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})  # noqa: S608
    else:
        session.expire_all()
        options = [selectinload(load) for load in loads] if mode == "orm_with_children_loaded" else []
        parent = session.scalars(select(model).where(model.id == row_id).options(*options)).one()  # type: ignore[attr-defined]
        session.delete(parent)
        session.flush()
    session.expire_all()


@dataclass
class CustomerRows:
    customer: Customer
    agent: Agent
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
        ScalingEvent: make_scaling_event(
            session, customer=customer, agent=agent, workflow_execution=execution
        ).id,
        QualityMetric: make_quality_metric(session, customer=customer, agent=agent).id,
        QualityBaseline: baseline.id,
        QualityRegression: make_quality_regression(session, baseline=baseline, workflow_execution=execution).id,
    }
    return CustomerRows(customer=customer, agent=agent, children=children)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_customer_removes_its_rows_in_every_child_table(session: Session, mode: str) -> None:
    rows = make_customer_with_rows_in_every_child_table(session)
    other = make_customer_with_rows_in_every_child_table(session)

    delete_through(
        session,
        mode,
        Customer,
        rows.customer.id,
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

    assert not row_exists(session, Customer, rows.customer.id)
    assert {model.__name__: row_exists(session, model, row_id) for model, row_id in rows.children.items()} == {
        model.__name__: False for model in rows.children
    }
    # Agents are not owned by a customer; another customer's rows are untouched.
    assert row_exists(session, Agent, rows.agent.id)
    assert all(row_exists(session, model, row_id) for model, row_id in other.children.items())


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_agent_keeps_its_events_with_null_agent_id(session: Session, mode: str) -> None:
    customer = make_customer(session)
    agent = make_agent(session)
    event_ids = [make_event(session, customer=customer, agent=agent).id for _ in range(2)]
    recommendation = make_recommendation(session, customer=customer, agent=agent)
    owned: dict[type[Base], uuid.UUID] = {
        Recommendation: recommendation.id,
        Optimization: make_optimization(session, recommendation=recommendation).id,
        AgentConfig: make_agent_config(session, agent=agent).id,
        AgentState: make_agent_state(session, agent=agent).id,
        AgentCapability: make_agent_capability(session, agent=agent).id,
        AgentMetric: make_agent_metric(session, agent=agent).id,
    }

    delete_through(session, mode, Agent, agent.id, Agent.events)

    assert not row_exists(session, Agent, agent.id)
    events = session.execute(
        text("SELECT id, agent_id, customer_id FROM events WHERE id = ANY(:ids) ORDER BY id"), {"ids": event_ids}
    ).all()
    assert [(row.id, row.agent_id, row.customer_id) for row in events] == [
        (event_id, None, customer.id) for event_id in sorted(event_ids)
    ]
    assert {model.__name__: row_exists(session, model, row_id) for model, row_id in owned.items()} == {
        model.__name__: False for model in owned
    }
    assert row_exists(session, Customer, customer.id)


@pytest.mark.parametrize("mode", ["orm", "orm_with_children_loaded"])
def test_deleting_agent_with_all_collections_loaded_still_keeps_its_events(session: Session, mode: str) -> None:
    event = make_event(session)
    make_agent_state(session, agent_id=event.agent_id)
    make_recommendation(session, agent_id=event.agent_id)

    delete_through(
        session, mode, Agent, event.agent_id, Agent.events, Agent.state, Agent.recommendations, Agent.configs
    )

    assert session.get(Event, event.id) is not None
    assert session.scalar(select(Event.agent_id).where(Event.id == event.id)) is None


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_workflow_execution_detaches_set_null_rows_and_deletes_steps_and_artifacts(
    session: Session, mode: str
) -> None:
    customer = make_customer(session)
    agent = make_agent(session)
    execution = make_workflow_execution(session, customer=customer, agent=agent)
    step = make_workflow_step(session, execution=execution)
    step_artifact = make_workflow_artifact(session, step=step)
    execution_artifact = make_workflow_artifact(session, execution=execution)
    scaling_event = make_scaling_event(session, customer=customer, agent=agent, workflow_execution=execution)
    regression = make_quality_regression(
        session, baseline=make_quality_baseline(session, customer=customer, agent=agent), workflow_execution=execution
    )
    state = make_agent_state(session, agent=agent, current_workflow_id=execution.id)

    delete_through(
        session,
        mode,
        WorkflowExecution,
        execution.id,
        WorkflowExecution.steps,
        WorkflowExecution.artifacts,
        WorkflowExecution.scaling_events,
        WorkflowExecution.quality_regressions,
        WorkflowExecution.current_for_states,
    )

    assert not row_exists(session, WorkflowExecution, execution.id)
    assert not row_exists(session, WorkflowStep, step.id)
    assert not row_exists(session, WorkflowArtifact, step_artifact.id)
    assert not row_exists(session, WorkflowArtifact, execution_artifact.id)
    assert session.scalar(
        select(ScalingEvent.workflow_execution_id).where(ScalingEvent.id == scaling_event.id)
    ) is None
    assert row_exists(session, ScalingEvent, scaling_event.id)
    assert session.scalar(
        select(QualityRegression.workflow_execution_id).where(QualityRegression.id == regression.id)
    ) is None
    assert row_exists(session, QualityRegression, regression.id)
    assert session.scalar(select(AgentState.current_workflow_id).where(AgentState.id == state.id)) is None
    assert row_exists(session, AgentState, state.id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_workflow_step_deletes_its_artifacts_but_not_the_execution_ones(session: Session, mode: str) -> None:
    step = make_workflow_step(session)
    step_artifact = make_workflow_artifact(session, step=step)
    execution_artifact = make_workflow_artifact(session, step=None, execution=None, workflow_execution_id=step.workflow_execution_id)

    delete_through(session, mode, WorkflowStep, step.id, WorkflowStep.artifacts)

    assert not row_exists(session, WorkflowArtifact, step_artifact.id)
    assert row_exists(session, WorkflowArtifact, execution_artifact.id)
    assert row_exists(session, WorkflowExecution, step.workflow_execution_id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_baseline_deletes_its_regressions(session: Session, mode: str) -> None:
    baseline = make_quality_baseline(session)
    regression_ids = [make_quality_regression(session, baseline=baseline).id for _ in range(2)]
    other_regression = make_quality_regression(session)

    delete_through(session, mode, QualityBaseline, baseline.id, QualityBaseline.regressions)

    assert [row_exists(session, QualityRegression, row_id) for row_id in regression_ids] == [False, False]
    assert row_exists(session, QualityRegression, other_regression.id)
    assert row_exists(session, Customer, baseline.customer_id)


@pytest.mark.parametrize("mode", DELETE_MODES)
def test_deleting_recommendation_deletes_its_approvals_and_optimizations(session: Session, mode: str) -> None:
    recommendation = make_recommendation(session)
    approval = make_approval(session, recommendation=recommendation)
    optimization = make_optimization(session, recommendation=recommendation)

    delete_through(
        session, mode, Recommendation, recommendation.id, Recommendation.approvals, Recommendation.optimizations
    )

    assert not row_exists(session, Approval, approval.id)
    assert not row_exists(session, Optimization, optimization.id)
    assert row_exists(session, Customer, recommendation.customer_id)
