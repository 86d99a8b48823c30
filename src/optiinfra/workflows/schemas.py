"""Workflows on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from optiinfra.enums import ArtifactType, StepStatus, WorkflowStatus, WorkflowType
from optiinfra.listing import ListQuery


class Artifact(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workflow_step_id: uuid.UUID | None
    artifact_type: ArtifactType
    artifact_name: str
    artifact_size_bytes: int | None
    content_type: str | None
    created_at: datetime


class Step(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    step_name: str
    step_order: int
    status: StepStatus
    started_at: datetime | None
    completed_at: datetime | None
    input_data: dict[str, Any]
    output_data: dict[str, Any]
    error_details: dict[str, Any] | None
    retry_count: int
    max_retries: int


class Execution(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent_id: uuid.UUID
    customer_id: uuid.UUID
    workflow_type: WorkflowType
    status: WorkflowStatus
    started_at: datetime | None
    completed_at: datetime | None
    input_data: dict[str, Any]
    output_data: dict[str, Any]
    error_details: dict[str, Any] | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime


class ExecutionDetail(Execution):
    steps: list[Step]
    artifacts: list[Artifact]
    waiting_for: dict[str, Any] | None = Field(
        default=None,
        description="while `waiting`: the step, when it looks again, and the evidence so far (samples per arm)",
    )
    paused_for: dict[str, Any] | None = Field(
        default=None, description="while `paused`: why a human must decide (resume or abort) and the evidence"
    )


class WorkflowDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000, description="why, kept with the decision")


Decision = WorkflowDecision  # the name inside the package; the API schema's name is unique across modules


class SpotAnalysisRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID
    agent_id: uuid.UUID | None = Field(
        default=None, description="the cost agent (default: the caller, or the most recently alive cost agent)"
    )
    lookback_days: float = Field(default=7, gt=0, le=90)


class SpotRolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimization_id: uuid.UUID
    executor: Literal["simulator", "webhook"] = "simulator"
    bake_seconds: float = Field(
        default=600, ge=0, le=7 * 24 * 3600, description="each phase runs at least this long before it is judged"
    )
    min_samples: int = Field(
        default=200,
        ge=10,
        le=1_000_000,
        description="records each arm (changed and control) needs per model version before a phase is judged",
    )
    deadline_seconds: float = Field(
        default=4 * 3600,
        gt=0,
        le=30 * 24 * 3600,
        description="if a phase has not enough traffic this long after it started, the rollout pauses for a human",
    )
    poll_seconds: float = Field(default=60, ge=1, le=3600, description="how often a waiting phase counts its samples")


class ScalingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID
    agent_id: uuid.UUID | None = None
    window_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    bucket_minutes: float = Field(default=5, gt=0, le=24 * 60)
    current_instances: int | None = Field(default=None, ge=0, le=10_000)
    up_threshold: float = Field(default=80, gt=0, le=100)
    down_threshold: float = Field(default=30, ge=0, lt=100)
    sustain: int = Field(default=3, ge=1, le=100)
    cooldown_minutes: float = Field(default=15, ge=0, le=24 * 60)
    min_instances: int = Field(default=1, ge=0)
    max_instances: int = Field(default=16, ge=1)


class ExecutionFilters(ListQuery):
    """GET /workflows: filters of the list."""

    customer_id: uuid.UUID | None = None
    workflow_type: WorkflowType | None = None
    status: WorkflowStatus | None = None
