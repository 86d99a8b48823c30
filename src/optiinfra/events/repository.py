"""Event queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db.queries import capped_json, paginate, where_given
from optiinfra.events.schemas import EventFilters
from optiinfra.models import Event
from optiinfra.tenancy import scope_to_caller


def list_events(
    session: Session, principal: Principal, filters: EventFilters, *, cursor: str | None, limit: int
) -> Sequence[Row[Any]]:
    """The columns an event list shows; `data` capped in size (see `capped_json`)."""
    columns = select(
        Event.id,
        Event.customer_id,
        Event.agent_id,
        Event.event_type,
        Event.severity,
        capped_json(Event.data).label("data"),
        Event.created_at,
    )
    statement = scope_to_caller(columns, principal, customer_column=Event.customer_id, agent_column=Event.agent_id)
    statement = where_given(
        statement,
        (Event.customer_id, filters.customer_id),
        (Event.agent_id, filters.agent_id),
        (Event.event_type, filters.event_type),
        (Event.severity, filters.severity),
    )
    if filters.since is not None:
        statement = statement.where(Event.created_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(Event.created_at < filters.until)
    statement = paginate(statement, created_column=Event.created_at, id_column=Event.id, cursor=cursor, limit=limit)
    return session.execute(statement).all()
