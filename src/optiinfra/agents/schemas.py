"""Agents on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from optiinfra.enums import AgentStatus, AgentType
from optiinfra.listing import ListQuery
from optiinfra.validation import BoundedJson

CAPABILITY_PATTERN = r"^[a-z][a-z0-9_.-]{0,254}$"


class Agent(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: AgentType
    name: str
    version: str | None
    status: AgentStatus
    endpoint: str | None
    capabilities: list[str]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    heartbeat_interval_seconds: int
    last_heartbeat: datetime | None
    # The customers the agent serves, as far as the caller may know: all of them for the operator and the agent
    # itself, the caller's own id (if assigned) for a customer, none for another agent.
    customer_ids: list[uuid.UUID] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class AgentRegistered(Agent):
    """The registered agent; `api_key` is set only when a key was issued by this call (shown once)."""

    api_key: str | None = None
    created: bool


class AgentRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AgentType
    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    version: str | None = Field(default=None, max_length=50)
    endpoint: str | None = Field(default=None, max_length=255)
    capabilities: list[str] = Field(default_factory=list, max_length=100)
    heartbeat_interval_seconds: int = Field(default=30, ge=1, le=86_400)
    metadata: BoundedJson = Field(default_factory=dict)
    # The customers the agent serves (operator only); on re-registration these are added, none is removed.
    customer_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)

    def capability_names(self) -> list[str]:
        """Capabilities without duplicates, in the order given."""
        return list(dict.fromkeys(self.capabilities))


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AgentStatus = AgentStatus.HEALTHY
    metadata: BoundedJson | None = None


class CustomerAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID


class AgentFilters(ListQuery):
    """GET /agents: filters of the list."""

    type: AgentType | None = None
    status: AgentStatus | None = None
