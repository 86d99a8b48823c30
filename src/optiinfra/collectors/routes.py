"""/api/v1/prometheus-sources"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.collectors import schemas, service

router = APIRouter(tags=["collectors"], route_class=StrictRoute)


@router.post("/prometheus-sources", status_code=201, response_model=schemas.PrometheusSource)
def create_source(
    payload: schemas.PrometheusSourceCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.PrometheusSource:
    """A Prometheus server the collector reads for a customer (customer, or operator naming `customer_id`). The
    authentication secret is never shown again."""
    return service.create_source(session, principal, payload)


@router.get("/prometheus-sources", response_model=Page[schemas.PrometheusSource])
def list_sources(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.PrometheusSourceFilters, Query()]
) -> Page[schemas.PrometheusSource]:
    """Prometheus sources with the collector's progress (collected until, last error, failures in a row)."""
    return service.list_sources(session, principal, filters)


@router.get("/prometheus-sources/{source_id}", response_model=schemas.PrometheusSource)
def get_source(source_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.PrometheusSource:
    return service.get_source(session, principal, source_id)


@router.patch("/prometheus-sources/{source_id}", response_model=schemas.PrometheusSource)
def update_source(
    source_id: uuid.UUID, payload: schemas.PrometheusSourceUpdate, session: SessionDep, principal: PrincipalDep
) -> schemas.PrometheusSource:
    """Pause or resume a source, change its step or its label mappings."""
    return service.update_source(session, principal, source_id, payload)


@router.delete("/prometheus-sources/{source_id}", status_code=204, response_class=Response)
def delete_source(source_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Response:
    """Remove a source (what it collected stays)."""
    service.delete_source(session, principal, source_id)
    return Response(status_code=204)
