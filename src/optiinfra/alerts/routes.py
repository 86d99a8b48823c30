"""/api/v1/alert-routes and /api/v1/alerts"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from optiinfra.alerts import schemas, service
from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute

router = APIRouter(tags=["alerts"], route_class=StrictRoute)


@router.post("/alert-routes", status_code=201, response_model=schemas.AlertRouteWithSecret)
def create_route(
    payload: schemas.AlertRouteCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.AlertRouteWithSecret:
    """A route for a customer's alerts (customer, or operator naming `customer_id`). A webhook route's signing
    secret is in this answer only; the URL is never shown again (only masked)."""
    return service.create_route(session, principal, payload)


@router.get("/alert-routes", response_model=Page[schemas.AlertRoute])
def list_routes(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.AlertRouteFilters, Query()]
) -> Page[schemas.AlertRoute]:
    return service.list_routes(session, principal, filters)


@router.get("/alert-routes/{route_id}", response_model=schemas.AlertRoute)
def get_route(route_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.AlertRoute:
    return service.get_route(session, principal, route_id)


@router.patch("/alert-routes/{route_id}", response_model=schemas.AlertRouteWithSecret)
def update_route(
    route_id: uuid.UUID, payload: schemas.AlertRouteUpdate, session: SessionDep, principal: PrincipalDep
) -> schemas.AlertRouteWithSecret:
    """Change a route; `rotate_secret` gives a webhook route a new signing secret (in this answer only)."""
    return service.update_route(session, principal, route_id, payload)


@router.delete("/alert-routes/{route_id}", status_code=204, response_class=Response)
def delete_route(route_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Response:
    service.delete_route(session, principal, route_id)
    return Response(status_code=204)


@router.post("/alert-routes/{route_id}/test", status_code=202, response_model=schemas.Alert)
def send_test(route_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.Alert:
    """Queue a test alert to the route; a worker delivers it. Follow it with `GET /alerts/{id}`."""
    return service.send_test(session, principal, route_id)


@router.get("/alerts", response_model=Page[schemas.Alert])
def list_alerts(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.AlertFilters, Query()]
) -> Page[schemas.Alert]:
    """Alerts, newest first: what was sent or is waiting, to which route, and how it went."""
    return service.list_alerts(session, principal, filters)


@router.get("/alerts/{alert_id}", response_model=schemas.AlertDetail)
def get_alert(alert_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.AlertDetail:
    """An alert and its delivery log (one row per attempt: outcome, HTTP status, duration, error)."""
    return service.get_alert(session, principal, alert_id)


@router.post("/alerts/{alert_id}/redeliver", status_code=202, response_model=schemas.AlertDetail)
def redeliver(alert_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.AlertDetail:
    """Send a failed alert again (409 for any other: a delivered alert is never sent again)."""
    return service.redeliver(session, principal, alert_id)
