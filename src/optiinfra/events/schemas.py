"""Events on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from optiinfra.enums import EventSeverity
from optiinfra.listing import ListQuery, Where
from optiinfra.validation import BoundedJson, SaneInstant


class Event(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    event_type: str
    severity: EventSeverity
    data: dict[str, Any]
    created_at: datetime


class EventCreate(BaseModel):
    """An event an agent appends about its own work."""

    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.:-]*$")
    severity: EventSeverity = EventSeverity.INFO
    customer_id: uuid.UUID | None = None
    data: BoundedJson = Field(default_factory=dict)


class EventFilters(ListQuery):
    """GET /events: filters of the audit log; `since` / `until` bound created_at."""

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    event_type: str | None = None
    severity: EventSeverity | None = None
    since: Annotated[SaneInstant | None, Where("created_at", ">=")] = None
    until: Annotated[SaneInstant | None, Where("created_at", "<")] = None
