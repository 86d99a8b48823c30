"""The OTLP report and settings on the wire (the OTLP messages themselves are opentelemetry-proto's)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class OtlpStatus(BaseModel):
    """The google.rpc.Status an OTLP/HTTP error carries (shown here in its JSON form; protobuf when the request was
    protobuf)."""

    code: int = Field(description="google.rpc.Code: 3 invalid argument, 16 unauthenticated, 14 unavailable, ...")
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class NotUnderstoodItem(BaseModel):
    """One thing that did not become part of a quality record, with how often it came and an example."""

    kind: str = Field(
        description="attribute, evaluation_name, unusable_evaluation, skipped_span, rejected_span or skipped_log"
    )
    name: str = Field(description="the attribute or evaluation name, or the reason")
    count: int
    example: str | None = Field(description="an example value, span name or evaluation name")
    first_seen_at: datetime
    last_seen_at: datetime


class NotUnderstoodReport(BaseModel):
    customer_id: uuid.UUID
    since: datetime
    items: list[NotUnderstoodItem]
