"""/api/v1/resources"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.api.deps import DEFAULT_PAGE_SIZE, CursorQuery, LimitQuery, PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.enums import ResourceType, ScalingEventType
from optiinfra.resources import schemas, service
from optiinfra.timeseries import DEFAULT_BUCKET
from optiinfra.validation import SaneInstant

router = APIRouter(prefix="/resources", tags=["resources"], route_class=StrictRoute)


@router.post("/metrics", response_model=schemas.IngestResult)
def ingest_metrics(
    payload: schemas.ResourceMetricBatch, session: SessionDep, principal: PrincipalDep
) -> schemas.IngestResult:
    """Store up to 10,000 resource samples for one customer. A batch with any invalid sample is refused whole (422,
    with each bad sample's index and reasons)."""
    return service.ingest_metrics(session, principal, payload)


@router.get("/metrics", response_model=schemas.ResourceMetricSeries)
def query_metrics(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    instance_id: Annotated[str | None, Query(max_length=255)] = None,
    resource_type: ResourceType | None = None,
    metric_name: Annotated[str | None, Query(max_length=100)] = None,
    start: SaneInstant | None = None,
    end: SaneInstant | None = None,
    bucket: Annotated[
        str, Query(max_length=20, description="bucket width: seconds, or with a unit (60s, 5m, 1h, 1d)")
    ] = DEFAULT_BUCKET,
) -> schemas.ResourceMetricSeries:
    """avg / min / max / count per instance, metric and bucket over [start, end) of the caller's samples; default
    the last hour in 60 s buckets."""
    return service.query_metrics(
        session,
        principal,
        customer_id=customer_id,
        instance_id=instance_id,
        resource_type=resource_type,
        metric_name=metric_name,
        start=start,
        end=end,
        bucket=bucket,
    )


@router.post("/scaling-events", status_code=201, response_model=schemas.ScalingEvent)
def record_scaling_event(
    payload: schemas.ScalingEventCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.ScalingEvent:
    """Record a scaling action with the state before and after it (an agent for itself, or the operator)."""
    return service.record_scaling_event(session, principal, payload)


@router.get("/scaling-events", response_model=Page[schemas.ScalingEvent])
def list_scaling_events(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    workflow_execution_id: uuid.UUID | None = None,
    event_type: ScalingEventType | None = None,
    success: bool | None = None,
    since: SaneInstant | None = None,
    until: SaneInstant | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
) -> Page[schemas.ScalingEvent]:
    """Scaling events, newest first; `since` / `until` filter on executed_at."""
    return service.list_scaling_events(
        session,
        principal,
        customer_id=customer_id,
        agent_id=agent_id,
        workflow_execution_id=workflow_execution_id,
        event_type=event_type,
        success=success,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


@router.get("/scaling-events/{scaling_event_id}", response_model=schemas.ScalingEvent)
def get_scaling_event(
    scaling_event_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> schemas.ScalingEvent:
    return service.get_scaling_event(session, principal, scaling_event_id)
