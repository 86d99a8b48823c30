"""Every relationship navigates both ways when loaded explicitly, and refuses to load implicitly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import RelationshipDirection, RelationshipProperty, Session, joinedload, selectinload

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

Builder = Callable[[Session], Any]

# For each many-to-one side "<Model>.<relationship>", how to build a child whose parent is set.
CHILD_BUILDERS: dict[str, Builder] = {
    "Event.customer": make_event,
    "Event.agent": make_event,
    "Recommendation.customer": make_recommendation,
    "Recommendation.agent": make_recommendation,
    "Approval.recommendation": make_approval,
    "Optimization.recommendation": make_optimization,
    "Optimization.customer": make_optimization,
    "Optimization.agent": make_optimization,
    "AgentConfig.agent": make_agent_config,
    "AgentState.agent": make_agent_state,
    "AgentState.current_workflow": lambda s: make_agent_state(s, current_workflow_id=make_workflow_execution(s).id),
    "AgentCapability.agent": make_agent_capability,
    "AgentMetric.agent": make_agent_metric,
    "WorkflowExecution.agent": make_workflow_execution,
    "WorkflowExecution.customer": make_workflow_execution,
    "WorkflowStep.execution": make_workflow_step,
    "WorkflowArtifact.execution": make_workflow_artifact,
    "WorkflowArtifact.step": lambda s: make_workflow_artifact(s, step=make_workflow_step(s)),
    "ResourceMetric.agent": make_resource_metric,
    "ResourceMetric.customer": make_resource_metric,
    "ScalingEvent.agent": make_scaling_event,
    "ScalingEvent.customer": make_scaling_event,
    "ScalingEvent.workflow_execution": lambda s: make_scaling_event(s, workflow_execution=make_workflow_execution(s)),
    "QualityMetric.agent": make_quality_metric,
    "QualityMetric.customer": make_quality_metric,
    "QualityBaseline.agent": make_quality_baseline,
    "QualityBaseline.customer": make_quality_baseline,
    "QualityRegression.agent": make_quality_regression,
    "QualityRegression.customer": make_quality_regression,
    "QualityRegression.baseline": make_quality_regression,
    "QualityRegression.workflow": lambda s: make_quality_regression(s, workflow_execution=make_workflow_execution(s)),
}

MODEL_FACTORIES: dict[type[Base], Builder] = {
    Customer: make_customer,
    Agent: make_agent,
    Event: make_event,
    Recommendation: make_recommendation,
    Approval: make_approval,
    Optimization: make_optimization,
    AgentConfig: make_agent_config,
    AgentState: make_agent_state,
    AgentCapability: make_agent_capability,
    AgentMetric: make_agent_metric,
    WorkflowExecution: make_workflow_execution,
    WorkflowStep: make_workflow_step,
    WorkflowArtifact: make_workflow_artifact,
    ResourceMetric: make_resource_metric,
    ScalingEvent: make_scaling_event,
    QualityMetric: make_quality_metric,
    QualityBaseline: make_quality_baseline,
    QualityRegression: make_quality_regression,
}


def all_relationships() -> list[RelationshipProperty[Any]]:
    return [
        relationship
        for mapper in sorted(Base.registry.mappers, key=lambda mapper: mapper.class_.__name__)
        for relationship in mapper.relationships
    ]


MANY_TO_ONE = {
    f"{relationship.parent.class_.__name__}.{relationship.key}": relationship
    for relationship in all_relationships()
    if relationship.direction is RelationshipDirection.MANYTOONE
}


def test_every_many_to_one_relationship_has_a_builder_here() -> None:
    assert set(CHILD_BUILDERS) == set(MANY_TO_ONE)


def test_every_relationship_has_a_mutual_back_populates() -> None:
    unpaired = []
    for relationship in all_relationships():
        back = relationship.mapper.relationships.get(relationship.back_populates or "")
        if back is None or back.back_populates != relationship.key or back.mapper is not relationship.parent:
            unpaired.append(f"{relationship.parent.class_.__name__}.{relationship.key}")

    assert unpaired == []


@pytest.mark.parametrize("name", sorted(CHILD_BUILDERS))
def test_relationship_navigates_from_child_to_parent_and_back(session: Session, name: str) -> None:
    relationship = MANY_TO_ONE[name]
    child_model, parent_model = relationship.parent.class_, relationship.mapper.class_
    back = relationship.mapper.relationships[relationship.back_populates]
    (foreign_key_column,) = relationship.local_columns
    foreign_key_attribute = relationship.parent.get_property_by_column(foreign_key_column).key
    child = CHILD_BUILDERS[name](session)
    child_id, parent_id = child.id, getattr(child, foreign_key_attribute)
    assert parent_id is not None
    session.expunge_all()

    loaded_child = session.scalars(
        select(child_model)
        .where(child_model.id == child_id)
        .options(joinedload(getattr(child_model, relationship.key)))
    ).one()
    parent = getattr(loaded_child, relationship.key)
    loaded_parent = session.scalars(
        select(parent_model).where(parent_model.id == parent_id).options(selectinload(getattr(parent_model, back.key)))
    ).one()

    assert isinstance(parent, parent_model)
    assert parent.id == parent_id
    assert loaded_parent is parent
    children = getattr(loaded_parent, back.key)
    if back.uselist:
        assert children == [loaded_child]
    else:
        assert children is loaded_child


@pytest.mark.parametrize(
    "relationship",
    all_relationships(),
    ids=[f"{relationship.parent.class_.__name__}.{relationship.key}" for relationship in all_relationships()],
)
def test_unloaded_relationship_raises_instead_of_lazy_loading(
    session: Session, relationship: RelationshipProperty[Any]
) -> None:
    model = relationship.parent.class_
    made = MODEL_FACTORIES[model](session)
    # The primary key, whatever its columns (quality_metrics': id and timestamp, migration 016).
    identity = inspect(made).identity
    session.expunge_all()
    row = session.get(model, identity)

    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        getattr(row, relationship.key)


def test_workflow_steps_come_in_step_order_even_when_inserted_out_of_order(session: Session) -> None:
    execution = make_workflow_execution(session)
    for order, name in [(3, "apply"), (1, "collect"), (2, "analyze"), (10, "report")]:
        make_workflow_step(session, execution=execution, step_name=name, step_order=order)
    session.expunge_all()
    # Without the relationship's ORDER BY a sequential scan returns insertion order; the index on
    # (workflow_execution_id, step_order) would sort the rows by accident, so it is kept out of this query.
    session.execute(text("SET LOCAL enable_indexscan = off"))
    session.execute(text("SET LOCAL enable_bitmapscan = off"))

    loaded = session.scalars(
        select(WorkflowExecution)
        .where(WorkflowExecution.id == execution.id)
        .options(selectinload(WorkflowExecution.steps))
    ).one()

    assert [(step.step_order, step.step_name) for step in loaded.steps] == [
        (1, "collect"),
        (2, "analyze"),
        (3, "apply"),
        (10, "report"),
    ]


def test_agent_state_is_a_single_object_and_points_at_the_current_workflow(session: Session) -> None:
    execution = make_workflow_execution(session)
    state = make_agent_state(session, agent_id=execution.agent_id, current_workflow_id=execution.id)
    session.expunge_all()

    agent = session.scalars(
        select(Agent)
        .where(Agent.id == execution.agent_id)
        .options(joinedload(Agent.state).joinedload(AgentState.current_workflow))
    ).one()

    assert isinstance(agent.state, AgentState)
    assert agent.state.id == state.id
    assert agent.state.current_workflow is not None
    assert agent.state.current_workflow.id == execution.id


def test_workflow_step_artifacts_and_execution_artifacts_are_told_apart(session: Session) -> None:
    execution = make_workflow_execution(session)
    step = make_workflow_step(session, execution=execution)
    step_artifact = make_workflow_artifact(session, step=step, artifact_name="step.log")
    execution_artifact = make_workflow_artifact(session, execution=execution, artifact_name="summary.md")
    session.expunge_all()

    loaded = session.scalars(
        select(WorkflowExecution)
        .where(WorkflowExecution.id == execution.id)
        .options(
            selectinload(WorkflowExecution.artifacts).selectinload(WorkflowArtifact.step),
            selectinload(WorkflowExecution.steps).selectinload(WorkflowStep.artifacts),
        )
    ).one()

    assert {artifact.id for artifact in loaded.artifacts} == {step_artifact.id, execution_artifact.id}
    assert [artifact.id for artifact in loaded.steps[0].artifacts] == [step_artifact.id]
    steps_by_artifact = {artifact.artifact_name: artifact.step for artifact in loaded.artifacts}
    assert steps_by_artifact["summary.md"] is None
    assert steps_by_artifact["step.log"] is loaded.steps[0]


def test_customer_sees_only_its_own_quality_metrics(session: Session) -> None:
    customer = make_customer(session)
    mine = {make_quality_metric(session, customer=customer).id for _ in range(3)}
    make_quality_metric(session)
    session.expunge_all()

    loaded = session.scalars(
        select(Customer).where(Customer.id == customer.id).options(selectinload(Customer.quality_metrics))
    ).one()

    assert {metric.id for metric in loaded.quality_metrics} == mine


def test_baseline_lists_its_regressions_and_each_regression_its_baseline(session: Session) -> None:
    baseline = make_quality_baseline(session)
    regression_ids = {make_quality_regression(session, baseline=baseline).id for _ in range(2)}
    make_quality_regression(session)
    session.expunge_all()

    loaded = session.scalars(
        select(QualityBaseline)
        .where(QualityBaseline.id == baseline.id)
        .options(selectinload(QualityBaseline.regressions).joinedload(QualityRegression.baseline))
    ).one()

    assert {regression.id for regression in loaded.regressions} == regression_ids
    assert all(regression.baseline is loaded for regression in loaded.regressions)


def test_regression_is_unresolved_until_resolved_at_is_set(session: Session) -> None:
    regression = make_quality_regression(session)

    assert regression.is_resolved is False
    assert regression.time_to_resolve_minutes is None


def test_time_to_resolve_is_measured_in_minutes_from_detection(session: Session) -> None:
    detected_at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    regression = make_quality_regression(
        session, detected_at=detected_at, resolved_at=detected_at + timedelta(minutes=90)
    )
    session.expunge_all()

    loaded = session.get(QualityRegression, regression.id)

    assert loaded is not None
    assert loaded.is_resolved is True
    assert loaded.time_to_resolve_minutes == pytest.approx(90.0)


def test_scaling_event_duration_is_none_until_completed(session: Session) -> None:
    event = make_scaling_event(session)

    assert event.completed_at is None
    assert event.duration_seconds is None


def test_scaling_event_duration_counts_seconds_from_execution_to_completion(session: Session) -> None:
    executed_at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    event = make_scaling_event(
        session, executed_at=executed_at, completed_at=executed_at + timedelta(minutes=2, seconds=5)
    )
    session.expunge_all()

    loaded = session.get(ScalingEvent, event.id)

    assert loaded is not None
    assert loaded.duration_seconds == pytest.approx(125.0)
