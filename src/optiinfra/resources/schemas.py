"""Resource metrics and scaling events on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from optiinfra.enums import ResourceType, ScalingEventType
from optiinfra.listing import ListQuery, SeriesQuery, Where
from optiinfra.validation import MAX_BATCH, BatchItem, BoundedJson, FiniteFloat, SaneInstant


class ResourceMetricSample(BaseModel):
    """One sample of one resource of one instance (GPU utilization, memory used, temperature, …)."""

    model_config = ConfigDict(extra="forbid")

    resource_type: ResourceType
    instance_id: str = Field(min_length=1, max_length=255)
    metric_name: str = Field(min_length=1, max_length=100)
    metric_value: FiniteFloat
    unit: str = Field(min_length=1, max_length=50)
    timestamp: SaneInstant
    metadata: BoundedJson = Field(default_factory=dict)


class ResourceMetricBatch(BaseModel):
    """A batch for one customer. An agent names the customer and reports as itself; a customer's key implies the
    customer; `agent_id` names the reporting agent for customer and operator keys (default: the resource agent that
    last reported the customer's metrics, else the most recently alive one)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    metrics: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class ResourceIngestResult(BaseModel):
    received: int
    inserted: int


IngestResult = ResourceIngestResult  # the name inside the package; the API schema's name is unique across modules


class ResourceMetricBucket(BaseModel):
    customer_id: uuid.UUID
    instance_id: str
    resource_type: ResourceType
    metric_name: str
    unit: str
    bucket_start: datetime
    bucket_end: datetime
    avg: float
    min: float
    max: float
    count: int


class ResourceMetricSeries(BaseModel):
    """Samples in [start, end), grouped per customer, instance, resource type, metric and unit, then by bucket."""

    start: datetime
    end: datetime
    bucket_seconds: int
    buckets: list[ResourceMetricBucket]


class ScalingEventCreate(BaseModel):
    """A scaling action taken (or attempted) on a customer's fleet, with the fleet's state before and after. The
    customer and agent are named as for resource metrics."""

    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    workflow_execution_id: uuid.UUID | None = None
    event_type: ScalingEventType
    trigger_reason: str = Field(min_length=1, max_length=500)
    before_state: BoundedJson
    after_state: BoundedJson
    success: bool = False
    error_details: BoundedJson | None = None
    executed_at: SaneInstant
    completed_at: SaneInstant | None = None
    metadata: BoundedJson = Field(default_factory=dict)

    @model_validator(mode="after")
    def _completed_after_executed(self) -> ScalingEventCreate:
        if self.completed_at is not None and self.completed_at < self.executed_at:
            raise ValueError("completed_at must not be before executed_at")
        return self


class ScalingEvent(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    workflow_execution_id: uuid.UUID | None
    event_type: ScalingEventType
    trigger_reason: str
    before_state: dict[str, Any]
    after_state: dict[str, Any]
    success: bool
    error_details: dict[str, Any] | None
    executed_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime
    updated_at: datetime


class ScalingEventFilters(ListQuery):
    """GET /resources/scaling-events: filters of the list; `since` / `until` bound executed_at."""

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    workflow_execution_id: uuid.UUID | None = None
    event_type: ScalingEventType | None = None
    success: bool | None = None
    since: Annotated[SaneInstant | None, Where("executed_at", ">=")] = None
    until: Annotated[SaneInstant | None, Where("executed_at", "<")] = None


class ResourceMetricQuery(SeriesQuery):
    """GET /resources/metrics: which samples to bucket."""

    customer_id: uuid.UUID | None = None
    instance_id: Annotated[str | None, Field(max_length=255)] = None
    resource_type: ResourceType | None = None
    metric_name: Annotated[str | None, Field(max_length=100)] = None
