"""Queries the workflows read: instance utilization history and the latest scaling events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session, selectinload

from optiinfra.auth.principal import Principal
from optiinfra.db.queries import list_page
from optiinfra.errors import NotFoundError
from optiinfra.models import (
    Agent,
    AgentType,
    ResourceMetric,
    ResourceType,
    ScalingEvent,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
)
from optiinfra.pagination import Page
from optiinfra.tenancy import agents_serving, scope_to_caller
from optiinfra.workflows.schemas import ExecutionFilters

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets start on round times


@dataclass(frozen=True)
class InstanceHistory:
    instance_id: str
    instance_type: str | None
    resource_type: ResourceType
    hourly_utilization: list[float]  # percent, oldest first
    purchase_option: str | None = None  # "spot" or "on_demand", from the collector's labels
    zone: str | None = None


def utilization_history(
    session: Session, customer_id: uuid.UUID, since: datetime, bucket: timedelta
) -> list[InstanceHistory]:
    """Per instance, average utilization per bucket: GPU utilization where the instance reports it, else CPU."""
    bucket_start = func.date_bin(literal(bucket), ResourceMetric.timestamp, literal(ORIGIN))
    rows = session.execute(
        select(
            ResourceMetric.instance_id,
            ResourceMetric.resource_type,
            bucket_start.label("bucket"),
            func.avg(ResourceMetric.metric_value),
            func.max(ResourceMetric.metadata_["instance_type"].astext),
            func.max(ResourceMetric.metadata_["purchase_option"].astext),
            func.max(ResourceMetric.metadata_["zone"].astext),
        )
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.metric_name == "utilization",
            ResourceMetric.resource_type.in_([ResourceType.GPU, ResourceType.CPU]),
        )
        .group_by(ResourceMetric.instance_id, ResourceMetric.resource_type, bucket_start)
        .order_by(ResourceMetric.instance_id, bucket_start)
    ).all()
    series: dict[tuple[str, ResourceType], list[float]] = {}
    types: dict[str, str | None] = {}
    purchase: dict[str, str | None] = {}
    zones: dict[str, str | None] = {}
    for instance_id, resource_type, _bucket, average, instance_type, purchase_option, zone in rows:
        series.setdefault((instance_id, resource_type), []).append(float(average))
        types[instance_id] = types.get(instance_id) or instance_type
        # The latest bucket's purchase option wins: an instance moved to spot is on spot.
        purchase[instance_id] = purchase_option or purchase.get(instance_id)
        zones[instance_id] = zone or zones.get(instance_id)
    histories = []
    for instance_id in sorted(types):
        resource_type = ResourceType.GPU if (instance_id, ResourceType.GPU) in series else ResourceType.CPU
        histories.append(
            InstanceHistory(
                instance_id,
                types[instance_id],
                resource_type,
                series[(instance_id, resource_type)],
                purchase_option=purchase.get(instance_id),
                zone=zones.get(instance_id),
            )
        )
    return histories


def fleet_utilization(session: Session, customer_id: uuid.UUID, since: datetime, bucket: timedelta) -> list[float]:
    """Average GPU utilization (percent) across the customer's fleet per bucket, oldest first."""
    bucket_start = func.date_bin(literal(bucket), ResourceMetric.timestamp, literal(ORIGIN))
    rows = session.execute(
        select(bucket_start, func.avg(ResourceMetric.metric_value))
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.metric_name == "utilization",
            ResourceMetric.resource_type == ResourceType.GPU,
        )
        .group_by(bucket_start)
        .order_by(bucket_start)
    ).all()
    return [float(row[1]) for row in rows]


def fleet_size(session: Session, customer_id: uuid.UUID, since: datetime) -> int:
    """Instances reporting GPU utilization since `since`."""
    return int(
        session.scalar(
            select(func.count(func.distinct(ResourceMetric.instance_id))).where(
                ResourceMetric.customer_id == customer_id,
                ResourceMetric.timestamp >= since,
                ResourceMetric.resource_type == ResourceType.GPU,
            )
        )
        or 0
    )


def fleet_instances(
    session: Session, customer_id: uuid.UUID, since: datetime
) -> list[tuple[str, str | None, str | None]]:
    """(instance, instance type, purchase option) of the instances reporting GPU utilization since `since`."""
    rows = session.execute(
        select(
            ResourceMetric.instance_id,
            func.max(ResourceMetric.metadata_["instance_type"].astext),
            func.max(ResourceMetric.metadata_["purchase_option"].astext),
        )
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.resource_type == ResourceType.GPU,
            ResourceMetric.metric_name == "utilization",
        )
        .group_by(ResourceMetric.instance_id)
        .order_by(ResourceMetric.instance_id)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def most_recent_agent(session: Session, agent_type: AgentType, customer_id: uuid.UUID) -> Agent | None:
    """The agent of a type serving the customer that heartbeat most recently."""
    return session.scalar(
        select(Agent)
        .where(Agent.type == agent_type, Agent.id.in_(agents_serving(customer_id)))
        .order_by(Agent.last_heartbeat.desc().nulls_last(), Agent.created_at)
        .limit(1)
    )


def running_rollout(session: Session, optimization_id: uuid.UUID) -> uuid.UUID | None:
    """An execution working on the optimization that has not ended (running, waiting, paused...), if any."""
    return session.scalar(
        select(WorkflowExecution.id).where(
            WorkflowExecution.status.not_in(
                [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED, WorkflowStatus.TIMEOUT]
            ),
            WorkflowExecution.input_data["optimization_id"].astext == str(optimization_id),
        )
    )


def _scoped(principal: Principal) -> Select[Any]:
    return scope_to_caller(
        select(WorkflowExecution),
        principal,
        customer_column=WorkflowExecution.customer_id,
        agent_column=WorkflowExecution.agent_id,
    )


def get_execution(session: Session, principal: Principal, execution_id: uuid.UUID) -> WorkflowExecution:
    """An execution with its steps and artifacts loaded, if the caller may see it; 404 otherwise."""
    execution: WorkflowExecution | None = session.scalar(
        _scoped(principal)
        .where(WorkflowExecution.id == execution_id)
        .options(selectinload(WorkflowExecution.steps), selectinload(WorkflowExecution.artifacts))
        .execution_options(populate_existing=True)
    )
    if execution is None:
        raise NotFoundError("No such workflow execution.", details={"workflow_id": str(execution_id)})
    return execution


def list_executions(session: Session, principal: Principal, filters: ExecutionFilters) -> Page[WorkflowExecution]:
    return list_page(session, WorkflowExecution, filters, principal=principal)


def artifact_of(session: Session, execution_id: uuid.UUID, artifact_id: uuid.UUID) -> WorkflowArtifact | None:
    return session.scalar(
        select(WorkflowArtifact).where(
            WorkflowArtifact.id == artifact_id, WorkflowArtifact.workflow_execution_id == execution_id
        )
    )


def last_scaling(session: Session, customer_id: uuid.UUID) -> ScalingEvent | None:
    return session.scalar(
        select(ScalingEvent)
        .where(ScalingEvent.customer_id == customer_id, ScalingEvent.success.is_(True))
        .order_by(ScalingEvent.executed_at.desc())
        .limit(1)
    )
