"""Alert routes and alerts on the wire. URLs and signing secrets are write-only: a route shows a masked URL and
whether it has a secret; the secret itself is shown once, when the route is created or its secret rotated."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from optiinfra.enums import EventSeverity
from optiinfra.listing import ListQuery

# The kinds of alert a route can subscribe to (`optiinfra.alerts.outbox` turns events into them).
KINDS = (
    "incident.opened",
    "incident.escalated",
    "incident.resolved",
    "rollback.triggered",
    "rollout.paused",
    "optimization.completed",
    "optimization.failed",
    "agent.failed",
)

AlertKind = Literal[
    "incident.opened",
    "incident.escalated",
    "incident.resolved",
    "rollback.triggered",
    "rollout.paused",
    "optimization.completed",
    "optimization.failed",
    "agent.failed",
]
Destination = Literal["webhook", "slack", "teams", "email"]
AlertStatus = Literal["pending", "sending", "delivered", "failed", "superseded"]
ModelName = Annotated[str, Field(min_length=1, max_length=100)]


class AlertRouteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID | None = Field(default=None, description="Required for the operator; a customer's own.")
    name: str = Field(min_length=1, max_length=255)
    destination: Destination
    url: str | None = Field(default=None, min_length=1, max_length=2048, description="webhook, slack, teams")
    email_to: EmailStr | None = Field(default=None, max_length=320, description="email")
    signing_secret: str | None = Field(
        default=None, min_length=16, max_length=100, description="webhook; generated when left out"
    )
    event_kinds: list[AlertKind] = Field(default_factory=list, max_length=20, description="none: every kind")
    min_severity: EventSeverity = EventSeverity.INFO
    model_names: list[ModelName] = Field(default_factory=list, max_length=50, description="none: every model")
    throttle_seconds: int = Field(default=900, ge=0, le=86_400, description="least time between updates")
    enabled: bool = True


class AlertRouteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    email_to: EmailStr | None = Field(default=None, max_length=320)
    event_kinds: list[AlertKind] | None = Field(default=None, max_length=20)
    min_severity: EventSeverity | None = None
    model_names: list[ModelName] | None = Field(default=None, max_length=50)
    throttle_seconds: int | None = Field(default=None, ge=0, le=86_400)
    enabled: bool | None = None
    rotate_secret: bool = Field(default=False, description="webhook: a new signing secret, shown once")


class AlertRoute(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    destination: Destination
    url_masked: str | None
    email_to: str | None
    has_signing_secret: bool
    event_kinds: list[str]
    min_severity: EventSeverity
    model_names: list[str]
    throttle_seconds: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


class AlertRouteWithSecret(AlertRoute):
    """Returned once, when a webhook route is created or its secret rotated: the only time the secret is shown."""

    signing_secret: str | None


class AlertDelivery(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    outcome: str
    status_code: int | None
    duration_ms: int
    error: str | None
    created_at: datetime


class Alert(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    route_id: uuid.UUID
    customer_id: uuid.UUID
    event_id: uuid.UUID | None
    kind: str
    severity: EventSeverity
    group_key: str
    status: AlertStatus
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]
    created_at: datetime


class AlertDetail(Alert):
    deliveries: list[AlertDelivery]


class AlertRouteFilters(ListQuery):
    """GET /alert-routes: filters of the list."""

    customer_id: uuid.UUID | None = None


class AlertFilters(ListQuery):
    """GET /alerts: filters of the list."""

    route_id: uuid.UUID | None = None
    status: AlertStatus | None = None
