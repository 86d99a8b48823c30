"""/api/v1/events"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.events import schemas, service

router = APIRouter(prefix="/events", tags=["events"], route_class=StrictRoute)


@router.get("", response_model=Page[schemas.Event])
def list_events(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.EventFilters, Query()]
) -> Page[schemas.Event]:
    """The audit log, newest first; a customer sees its own events, an agent the events it is named in."""
    return service.list_events(session, principal, filters)


@router.post("", status_code=201, response_model=schemas.Event)
def append_event(payload: schemas.EventCreate, session: SessionDep, principal: PrincipalDep) -> schemas.Event:
    """An agent appends an event about its own work."""
    return schemas.Event.model_validate(service.append_agent_event(session, principal, payload))
