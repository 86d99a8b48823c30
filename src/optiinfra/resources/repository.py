"""Resource queries: the metrics COPY, bucketed reads, scaling events. Every read goes through `scope_to_caller`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db.bulk import copy_rows
from optiinfra.db.queries import get_row, list_page, where_filters
from optiinfra.models import (
    Agent,
    AgentType,
    ResourceMetric,
    ScalingEvent,
    WorkflowExecution,
)
from optiinfra.pagination import Page
from optiinfra.resources.schemas import ResourceMetricQuery, ScalingEventFilters
from optiinfra.tenancy import agents_serving, scope_to_caller
from optiinfra.timeseries import Bucketing, bucket_start


class ResourceMetricRow(NamedTuple):
    """One resource_metrics row as the COPY sends it."""

    agent_id: uuid.UUID
    customer_id: uuid.UUID
    instance_id: str
    resource_type: str
    metric_name: str
    metric_value: float
    unit: str | None
    timestamp: datetime
    metadata: dict[str, Any]


METRIC_COLUMNS = ResourceMetricRow._fields


def copy_metrics(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """COPY rows (`ResourceMetricRow`s, or tuples in METRIC_COLUMNS order) into resource_metrics, inside the
    session's transaction."""
    return copy_rows(session, "resource_metrics", METRIC_COLUMNS, rows, json_columns={"metadata"})


def default_resource_agent(session: Session, customer_id: uuid.UUID) -> uuid.UUID | None:
    """The resource agent serving this customer that last reported its resources, else the most recently alive
    resource agent serving it."""
    serving = Agent.id.in_(agents_serving(customer_id))
    recent = session.scalar(
        select(ResourceMetric.agent_id)
        .join(Agent, Agent.id == ResourceMetric.agent_id)
        .where(ResourceMetric.customer_id == customer_id, Agent.type == AgentType.RESOURCE, serving)
        .order_by(ResourceMetric.timestamp.desc())
        .limit(1)
    )
    if recent is not None:
        return recent
    return session.scalar(
        select(Agent.id)
        .where(Agent.type == AgentType.RESOURCE, serving)
        .order_by(Agent.last_heartbeat.desc().nulls_last(), Agent.created_at)
        .limit(1)
    )


def metric_buckets(
    session: Session,
    principal: Principal,
    window: Bucketing,
    query: ResourceMetricQuery,
    *,
    limit: int,
) -> list[Any]:
    """avg / min / max / count per (customer, instance, resource type, metric, unit, bucket) of the samples the
    caller may see in [start, end); at most `limit` rows."""
    # Scoped as rows first (the tenancy helper works on entity selects), then narrowed to the columns needed.
    statement = scope_to_caller(
        select(ResourceMetric).where(ResourceMetric.timestamp >= window.start, ResourceMetric.timestamp < window.end),
        principal,
        customer_column=ResourceMetric.customer_id,
        agent_column=ResourceMetric.agent_id,
    )
    statement = where_filters(statement, ResourceMetric, query)
    samples = statement.with_only_columns(
        ResourceMetric.customer_id,
        ResourceMetric.instance_id,
        ResourceMetric.resource_type,
        ResourceMetric.metric_name,
        ResourceMetric.unit,
        bucket_start(ResourceMetric.timestamp, window.seconds).label("bucket_start"),
        ResourceMetric.metric_value,
    ).subquery()
    keys = (
        samples.c.customer_id,
        samples.c.instance_id,
        samples.c.resource_type,
        samples.c.metric_name,
        samples.c.unit,
        samples.c.bucket_start,
    )
    grouped = (
        select(
            *keys,
            func.avg(samples.c.metric_value),
            func.min(samples.c.metric_value),
            func.max(samples.c.metric_value),
            func.count(),
        )
        .group_by(*keys)
        .order_by(*keys)
        .limit(limit)
    )
    return list(session.execute(grouped).all())


# --- scaling events --------------------------------------------------------------------------------------------


def workflow_of_customer(session: Session, workflow_execution_id: uuid.UUID, customer_id: uuid.UUID) -> bool:
    """Whether the workflow execution exists and is the customer's."""
    found = session.scalar(
        select(WorkflowExecution.id).where(
            WorkflowExecution.id == workflow_execution_id, WorkflowExecution.customer_id == customer_id
        )
    )
    return found is not None


def get_scaling_event(session: Session, principal: Principal, scaling_event_id: uuid.UUID) -> ScalingEvent:
    return get_row(session, ScalingEvent, scaling_event_id, principal, "scaling event", "scaling_event_id")


def list_scaling_events(session: Session, principal: Principal, filters: ScalingEventFilters) -> Page[ScalingEvent]:
    return list_page(session, ScalingEvent, filters, principal=principal)
