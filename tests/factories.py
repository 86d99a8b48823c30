"""Plain factory functions for the 18 tables.

Each factory creates the parents it needs when they are not given, adds the new row to the session, flushes
(so server defaults and ids are in place) and returns it. Keyword overrides replace any column value. Parents
are linked through their foreign-key columns, not through relationships, so no `lazy="raise"` collection is
touched while building test data.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from optiinfra.models import (
    Agent,
    AgentCapability,
    AgentConfig,
    AgentCustomer,
    AgentMetric,
    AgentState,
    AgentType,
    Approval,
    ArtifactType,
    Customer,
    Event,
    Optimization,
    QualityBaseline,
    QualityMetric,
    QualityRegression,
    Recommendation,
    RegressionSeverity,
    RegressionType,
    ResourceMetric,
    ResourceType,
    ScalingEvent,
    ScalingEventType,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStep,
    WorkflowType,
)

ModelT = TypeVar("ModelT")


def unique_suffix() -> str:
    return uuid.uuid4().hex


def _persist(session: Session, row: ModelT) -> ModelT:
    session.add(row)
    session.flush()
    return row


def make_customer(session: Session, **overrides: Any) -> Customer:
    suffix = unique_suffix()
    values: dict[str, Any] = {
        "name": f"Customer {suffix[:8]}",
        "email": f"customer-{suffix}@example.com",
        "api_key": hashlib.sha256(f"oi_{suffix}".encode()).hexdigest(),
    }
    return _persist(session, Customer(**{**values, **overrides}))


def make_agent(session: Session, **overrides: Any) -> Agent:
    values: dict[str, Any] = {"type": AgentType.COST, "name": f"agent-{unique_suffix()}"}
    return _persist(session, Agent(**{**values, **overrides}))


def assign(session: Session, agent: Agent, customer: Customer) -> AgentCustomer:
    """Assign the agent to the customer (an agent acts only for its assigned customers)."""
    return _persist(session, AgentCustomer(agent_id=agent.id, customer_id=customer.id))


def make_event(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> Event:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "event_type": "agent.heartbeat",
        "data": {"source": "factory"},
    }
    return _persist(session, Event(**{**values, **overrides}))


def make_recommendation(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> Recommendation:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "type": "spot_migration",
        "title": "Move batch inference to spot instances",
        "confidence_score": 0.8,
    }
    return _persist(session, Recommendation(**{**values, **overrides}))


def make_approval(session: Session, recommendation: Recommendation | None = None, **overrides: Any) -> Approval:
    recommendation = recommendation or make_recommendation(session)
    values: dict[str, Any] = {"recommendation_id": recommendation.id, "approved_by": "ops@example.com"}
    return _persist(session, Approval(**{**values, **overrides}))


def make_optimization(session: Session, recommendation: Recommendation | None = None, **overrides: Any) -> Optimization:
    recommendation = recommendation or make_recommendation(session)
    values: dict[str, Any] = {
        "recommendation_id": recommendation.id,
        "customer_id": recommendation.customer_id,
        "agent_id": recommendation.agent_id,
    }
    return _persist(session, Optimization(**{**values, **overrides}))


def make_agent_config(session: Session, agent: Agent | None = None, **overrides: Any) -> AgentConfig:
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "agent_id": agent.id,
        "config_key": f"key-{unique_suffix()}",
        "config_value": "30",
    }
    return _persist(session, AgentConfig(**{**values, **overrides}))


def make_agent_state(session: Session, agent: Agent | None = None, **overrides: Any) -> AgentState:
    agent = agent or make_agent(session)
    return _persist(session, AgentState(**{"agent_id": agent.id, **overrides}))


def make_agent_capability(session: Session, agent: Agent | None = None, **overrides: Any) -> AgentCapability:
    agent = agent or make_agent(session)
    values: dict[str, Any] = {"agent_id": agent.id, "capability_name": f"capability-{unique_suffix()}"}
    return _persist(session, AgentCapability(**{**values, **overrides}))


def make_agent_metric(session: Session, agent: Agent | None = None, **overrides: Any) -> AgentMetric:
    agent = agent or make_agent(session)
    values: dict[str, Any] = {"agent_id": agent.id, "metric_name": "requests_handled", "metric_value": 42.0}
    return _persist(session, AgentMetric(**{**values, **overrides}))


def make_workflow_execution(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> WorkflowExecution:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "workflow_type": WorkflowType.COST_ANALYSIS,
    }
    return _persist(session, WorkflowExecution(**{**values, **overrides}))


def make_workflow_step(session: Session, execution: WorkflowExecution | None = None, **overrides: Any) -> WorkflowStep:
    execution = execution or make_workflow_execution(session)
    values: dict[str, Any] = {"workflow_execution_id": execution.id, "step_name": "collect", "step_order": 1}
    return _persist(session, WorkflowStep(**{**values, **overrides}))


def make_workflow_artifact(
    session: Session,
    execution: WorkflowExecution | None = None,
    step: WorkflowStep | None = None,
    **overrides: Any,
) -> WorkflowArtifact:
    """An artifact of `step` when given, else of the whole execution."""
    if execution is None:
        execution_id = step.workflow_execution_id if step else make_workflow_execution(session).id
    else:
        execution_id = execution.id
    values: dict[str, Any] = {
        "workflow_execution_id": execution_id,
        "workflow_step_id": step.id if step else None,
        "artifact_type": ArtifactType.REPORT,
        "artifact_name": "cost-report.json",
        "artifact_path": "s3://optiinfra-artifacts/cost-report.json",
    }
    return _persist(session, WorkflowArtifact(**{**values, **overrides}))


def make_resource_metric(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> ResourceMetric:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "instance_id": f"i-{unique_suffix()[:17]}",
        "resource_type": ResourceType.GPU,
        "metric_name": "utilization",
        "metric_value": 73.5,
        "unit": "percent",
        "timestamp": datetime.now(UTC),
    }
    return _persist(session, ResourceMetric(**{**values, **overrides}))


def make_scaling_event(
    session: Session,
    customer: Customer | None = None,
    agent: Agent | None = None,
    workflow_execution: WorkflowExecution | None = None,
    **overrides: Any,
) -> ScalingEvent:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "workflow_execution_id": workflow_execution.id if workflow_execution else None,
        "event_type": ScalingEventType.SCALE_UP,
        "trigger_reason": "GPU utilization above 85% for 10 minutes",
        "before_state": {"instance_count": 2, "avg_utilization": 0.91},
        "after_state": {"instance_count": 3, "avg_utilization": 0.64},
        "executed_at": datetime.now(UTC),
    }
    return _persist(session, ScalingEvent(**{**values, **overrides}))


def make_quality_metric(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> QualityMetric:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session, type=AgentType.APPLICATION)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "request_id": f"req-{unique_suffix()}",
        "model_name": "llama-3-70b",
        "model_version": "v1",
        "prompt_tokens": 120,
        "completion_tokens": 80,
        "latency_ms": 850.0,
        "relevance_score": 0.9,
        "coherence_score": 0.85,
        "factuality_score": 0.95,
        "toxicity_score": 0.01,
        "overall_quality_score": 0.9,
        "timestamp": datetime.now(UTC),
    }
    return _persist(session, QualityMetric(**{**values, **overrides}))


def make_quality_baseline(
    session: Session, customer: Customer | None = None, agent: Agent | None = None, **overrides: Any
) -> QualityBaseline:
    customer = customer or make_customer(session)
    agent = agent or make_agent(session, type=AgentType.APPLICATION)
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "agent_id": agent.id,
        "model_name": "llama-3-70b",
        "model_version": "v1",
        "sample_size": 500,
        "avg_relevance_score": 0.9,
        "avg_coherence_score": 0.88,
        "avg_factuality_score": 0.93,
        "avg_overall_score": 0.9,
        "p95_latency_ms": 1200.0,
        "established_at": datetime.now(UTC),
    }
    return _persist(session, QualityBaseline(**{**values, **overrides}))


def make_quality_regression(
    session: Session,
    baseline: QualityBaseline | None = None,
    workflow_execution: WorkflowExecution | None = None,
    **overrides: Any,
) -> QualityRegression:
    """A regression against `baseline`, for the baseline's customer and agent."""
    baseline = baseline or make_quality_baseline(session)
    values: dict[str, Any] = {
        "customer_id": baseline.customer_id,
        "agent_id": baseline.agent_id,
        "baseline_id": baseline.id,
        "workflow_execution_id": workflow_execution.id if workflow_execution else None,
        "regression_type": RegressionType.QUALITY_DROP,
        "severity": RegressionSeverity.HIGH,
        "detected_at": datetime.now(UTC),
        "metric_name": "overall_quality_score",
        "baseline_value": 0.9,
        "current_value": 0.72,
        "delta_percent": -20.0,
        "sample_size": 200,
    }
    return _persist(session, QualityRegression(**{**values, **overrides}))
