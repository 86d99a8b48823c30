"""Prometheus sources on the wire. The authentication secret is write-only: a source shows whether it has one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optiinfra.listing import ListQuery

# A Prometheus label name (the data model's rule); only such names are ever put into a query.
LabelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
AuthType = Literal["none", "basic", "bearer"]


class PrometheusSourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = Field(default=None, description="Required for the operator; a customer's own.")
    name: str = Field(min_length=1, max_length=100)
    base_url: str = Field(
        min_length=1, max_length=2048, description="The server's root, e.g. https://prometheus.example.com"
    )
    auth_type: AuthType = "none"
    auth_username: str | None = Field(default=None, min_length=1, max_length=255, description="basic only")
    auth_secret: str | None = Field(
        default=None, min_length=1, max_length=1000, description="basic: the password; bearer: the token"
    )
    instance_label: LabelName = Field(default="instance", description="the label naming the machine")
    instance_type_label: LabelName = Field(default="instance_type", description="e.g. g5.xlarge")
    zone_label: LabelName = Field(default="zone", description="e.g. us-east-1a")
    purchase_option_label: LabelName = Field(
        default="capacity_type", description="spot or on-demand (values containing 'spot' or 'preemptible' are spot)"
    )
    step_seconds: int = Field(default=60, ge=1, le=3600, description="the range queries' step (the scrape interval)")
    lookback_hours: int = Field(default=168, ge=1, le=2160, description="what the first collection backfills")
    enabled: bool = True

    @model_validator(mode="after")
    def _auth_matches(self) -> PrometheusSourceCreate:
        if self.auth_type == "none" and (self.auth_secret is not None or self.auth_username is not None):
            raise ValueError("auth_type 'none' takes no auth_username or auth_secret")
        if self.auth_type != "none" and self.auth_secret is None:
            raise ValueError(f"auth_type {self.auth_type!r} needs auth_secret")
        if (self.auth_type == "basic") != (self.auth_username is not None):
            raise ValueError("auth_username goes with auth_type 'basic' only, and basic needs it")
        return self


class PrometheusSourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    step_seconds: int | None = Field(default=None, ge=1, le=3600)
    instance_label: LabelName | None = None
    instance_type_label: LabelName | None = None
    zone_label: LabelName | None = None
    purchase_option_label: LabelName | None = None


class PrometheusSource(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    base_url: str
    auth_type: AuthType
    auth_username: str | None
    has_auth_secret: bool
    instance_label: str
    instance_type_label: str
    zone_label: str
    purchase_option_label: str
    step_seconds: int
    lookback_hours: int
    enabled: bool
    collected_until: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class SourceCollection(BaseModel):
    """What one collection of one source did."""

    source_id: uuid.UUID
    name: str
    ok: bool
    error: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    resource_rows: int = 0
    agent_rows: int = 0
    skipped_duplicates: int = 0
    recommendations: list[dict[str, Any]] = Field(default_factory=list)


class PrometheusSourceFilters(ListQuery):
    """GET /prometheus-sources: filters of the list."""

    customer_id: uuid.UUID | None = None
