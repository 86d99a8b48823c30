"""Agent configs, state, locks, capabilities and metrics on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from optiinfra.enums import AgentStatus, AgentStatusDetail, ConfigType, MetricType
from optiinfra.listing import SeriesQuery
from optiinfra.validation import MAX_BATCH, BatchItem, BoundedJson, FiniteFloat, SaneInstant

# Config keys, lock resources and capability names travel in the path: letters, digits and _ . : -
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
MAX_CONFIG_VALUE = 65_536


def _empty_if_none(value: Any) -> Any:
    return {} if value is None else value


JsonObject = Annotated[dict[str, Any], BeforeValidator(_empty_if_none)]


# --- configs ---------------------------------------------------------------------------------------------------


class AgentConfig(BaseModel):
    """One config value: as stored (text) and parsed by its type."""

    agent_id: uuid.UUID
    key: str
    value: str
    config_type: ConfigType
    parsed_value: Any
    description: str | None
    created_at: datetime
    updated_at: datetime


class AgentConfigSet(BaseModel):
    """Set a config value; `value` is text that must parse as `config_type`."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(max_length=MAX_CONFIG_VALUE)
    config_type: ConfigType = ConfigType.STRING
    description: str | None = Field(default=None, max_length=5_000)


# --- state and locks -------------------------------------------------------------------------------------------


class AgentState(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: uuid.UUID
    current_status: AgentStatusDetail
    active_workflows: list[uuid.UUID]
    current_workflow_id: uuid.UUID | None
    locks: JsonObject
    last_activity: datetime
    resource_usage: JsonObject
    metadata: JsonObject = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime
    updated_at: datetime


class AgentStateUpdate(BaseModel):
    """What the agent (or the workflow runner) reports; fields left out stay as they are.

    `resource_usage` replaces the stored snapshot; `metadata` is merged key by key; `current_workflow_id: null`
    clears it.
    """

    model_config = ConfigDict(extra="forbid")

    current_status: AgentStatusDetail | None = None
    resource_usage: BoundedJson | None = None
    metadata: BoundedJson | None = None
    active_workflows: list[uuid.UUID] | None = Field(default=None, max_length=1_000)
    current_workflow_id: uuid.UUID | None = None


class LockAcquire(BaseModel):
    """Optional note kept with the lock, shown to whoever is refused it."""

    model_config = ConfigDict(extra="forbid")

    purpose: str | None = Field(default=None, max_length=500)


class Lock(BaseModel):
    """A held resource lock. `is_expired`: the holder is failed or stopped, so the next agent to ask takes it."""

    resource: str
    agent_id: uuid.UUID
    agent_name: str
    acquired_at: datetime
    purpose: str | None
    holder_status: AgentStatus
    is_expired: bool


# --- capabilities ----------------------------------------------------------------------------------------------


class AgentCapability(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: uuid.UUID
    capability_name: str
    capability_version: str
    enabled: bool
    config: JsonObject
    description: str | None
    created_at: datetime
    updated_at: datetime


class AgentCapabilityUpdate(BaseModel):
    """Settings of a capability the agent registered; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    capability_version: str | None = Field(default=None, min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.+-]+$")
    config: BoundedJson | None = None
    description: str | None = Field(default=None, max_length=5_000)


# --- metrics ---------------------------------------------------------------------------------------------------


class AgentMetricSample(BaseModel):
    """One sample of one of the agent's own series; `recorded_at` defaults to the time the batch arrives."""

    model_config = ConfigDict(extra="forbid")

    metric_name: str = Field(min_length=1, max_length=255, pattern=NAME_PATTERN)
    metric_value: FiniteFloat
    metric_type: MetricType = MetricType.GAUGE
    tags: BoundedJson = Field(default_factory=dict)
    recorded_at: SaneInstant | None = None


class AgentMetricBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class AgentMetricsIngestResult(BaseModel):
    received: int
    inserted: int


IngestResult = AgentMetricsIngestResult  # the name inside the package; the API schema's name is unique across modules


class MetricBucket(BaseModel):
    metric_name: str
    bucket_start: datetime
    bucket_end: datetime
    avg: float
    min: float
    max: float
    count: int


class AgentMetricSeries(BaseModel):
    """Samples in [start, end), grouped by metric name and bucket (oldest first)."""

    agent_id: uuid.UUID
    start: datetime
    end: datetime
    bucket_seconds: int
    buckets: list[MetricBucket]


class AgentMetricQuery(SeriesQuery):
    """GET /agents/{agent_id}/metrics: which of the agent's samples to bucket."""

    metric_name: Annotated[str | None, Field(max_length=255)] = None
