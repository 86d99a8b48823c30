"""/api/v1/resources"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.resources import schemas, service

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
    session: SessionDep, principal: PrincipalDep, query: Annotated[schemas.ResourceMetricQuery, Query()]
) -> schemas.ResourceMetricSeries:
    """avg / min / max / count per instance, metric and bucket over [start, end) of the caller's samples; default
    the last hour in 60 s buckets."""
    return service.query_metrics(session, principal, query)


@router.post("/scaling-events", status_code=201, response_model=schemas.ScalingEvent)
def record_scaling_event(
    payload: schemas.ScalingEventCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.ScalingEvent:
    """Record a scaling action with the state before and after it (an agent for itself, or the operator)."""
    return service.record_scaling_event(session, principal, payload)


@router.get("/scaling-events", response_model=Page[schemas.ScalingEvent])
def list_scaling_events(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.ScalingEventFilters, Query()]
) -> Page[schemas.ScalingEvent]:
    """Scaling events, newest first; `since` / `until` filter on executed_at."""
    return service.list_scaling_events(session, principal, filters)


@router.get("/scaling-events/{scaling_event_id}", response_model=schemas.ScalingEvent)
def get_scaling_event(
    scaling_event_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> schemas.ScalingEvent:
    return service.get_scaling_event(session, principal, scaling_event_id)
