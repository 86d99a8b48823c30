"""Writing and reading the audit log. Every state change calls `record` in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from optiinfra.alerts import outbox as alert_outbox
from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.events import repository
from optiinfra.events import schemas as event_schemas
from optiinfra.metrics import counters
from optiinfra.models import Event, EventSeverity
from optiinfra.pagination import Page


def record(
    session: Session,
    *,
    event_type: str,
    actor: Principal,
    customer_id: uuid.UUID | None,
    agent_id: uuid.UUID | None = None,
    severity: EventSeverity = EventSeverity.INFO,
    subject: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Event:
    """Append one event: what happened, to what, by whom, and the state before and after; with it, in the same
    transaction, the counters it stands for and the alerts it calls for."""
    data: dict[str, Any] = {"actor": actor.as_actor()}
    if subject is not None:
        data["subject"] = subject
    if before is not None:
        data["before"] = before
    if after is not None:
        data["after"] = after
    if extra:
        data.update(extra)
    # clock_timestamp(), not now(): events written in one transaction keep their order in the log.
    event = Event(
        customer_id=customer_id,
        agent_id=agent_id,
        event_type=event_type,
        severity=severity,
        data=data,
        created_at=func.clock_timestamp(),
    )
    session.add(event)
    session.flush()
    # In the event's transaction: the counters it stands for, and the alerts it calls for (docs/alerts.md).
    counters.count_event(session, event)
    alert_outbox.on_event(session, event)
    return event


def append_agent_event(session: Session, principal: Principal, payload: event_schemas.EventCreate) -> Event:
    """An agent appends an event about its own work (for a customer assigned to it, or none); it is always recorded
    as that agent's."""
    principal.require(Role.AGENT)
    if payload.customer_id is not None:
        customer_repository.customer_to_act_for(session, principal, payload.customer_id)
    return record(
        session,
        event_type=payload.event_type,
        actor=principal,
        customer_id=payload.customer_id,
        agent_id=principal.agent_id,
        severity=payload.severity,
        extra={"payload": payload.data},
    )


def list_events(
    session: Session, principal: Principal, filters: event_schemas.EventFilters
) -> Page[event_schemas.Event]:
    return repository.list_events(session, principal, filters).map(event_schemas.Event.model_validate)
