"""/api/v1/events"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from optiinfra.api.deps import DEFAULT_PAGE_SIZE, CursorQuery, LimitQuery, PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.enums import EventSeverity
from optiinfra.events import schemas, service
from optiinfra.validation import SaneInstant

router = APIRouter(prefix="/events", tags=["events"], route_class=StrictRoute)


@router.get("", response_model=Page[schemas.Event])
def list_events(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    event_type: str | None = None,
    severity: EventSeverity | None = None,
    since: SaneInstant | None = None,
    until: SaneInstant | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_PAGE_SIZE,
) -> Page[schemas.Event]:
    """The audit log, newest first; a customer sees its own events, an agent the events it is named in."""
    filters = schemas.EventFilters(
        customer_id=customer_id,
        agent_id=agent_id,
        event_type=event_type,
        severity=severity,
        since=since,
        until=until,
    )
    return service.list_events(session, principal, filters, cursor=cursor, limit=limit)


@router.post("", status_code=201, response_model=schemas.Event)
def append_event(payload: schemas.EventCreate, session: SessionDep, principal: PrincipalDep) -> schemas.Event:
    """An agent appends an event about its own work."""
    return schemas.Event.model_validate(service.append_agent_event(session, principal, payload))
