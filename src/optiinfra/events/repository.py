"""Event queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db.queries import capped_json, list_page
from optiinfra.events.schemas import EventFilters
from optiinfra.models import Event
from optiinfra.pagination import Page

# What an event list shows of each event: `data` capped in size (see `capped_json`).
_LISTED = (
    Event.id,
    Event.customer_id,
    Event.agent_id,
    Event.event_type,
    Event.severity,
    capped_json(Event.data).label("data"),
    Event.created_at,
)


def list_events(session: Session, principal: Principal, filters: EventFilters) -> Page[Row[Any]]:
    return list_page(session, Event, filters, principal=principal, columns=_LISTED)
