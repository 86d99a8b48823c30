"""Recommendations, approvals and optimizations on the wire."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optiinfra.enums import ApprovalStatus, OptimizationStatus, RecommendationPriority, RecommendationStatus
from optiinfra.listing import ListQuery
from optiinfra.validation import BoundedJson

Money = Decimal  # numeric(10, 2) in the database


class Approval(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    recommendation_id: uuid.UUID
    approved_by: str
    status: ApprovalStatus
    comment: str | None
    created_at: datetime


class Optimization(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    recommendation_id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    status: OptimizationStatus
    progress: int
    result: dict[str, Any] | None
    error: str | None
    actual_savings: Money | None
    actual_improvement: Money | None
    started_at: datetime | None
    completed_at: datetime | None
    rolled_back_at: datetime | None
    created_at: datetime


class Recommendation(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    type: str
    title: str
    description: str | None
    estimated_savings: Money | None
    estimated_improvement: Money | None
    confidence_score: float
    priority: RecommendationPriority
    status: RecommendationStatus
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None
    executed_at: datetime | None


class RecommendationDetail(Recommendation):
    approvals: list[Approval]
    optimizations: list[Optimization]


# numeric(10, 2): at most 8 digits before the point and 2 after.
Amount = Annotated[
    Decimal,
    Field(max_digits=10, decimal_places=2, ge=Decimal("-99999999.99"), le=Decimal("99999999.99"), allow_inf_nan=False),
]


class RecommendationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID
    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=20_000)
    estimated_savings: Amount | None = None
    estimated_improvement: Amount | None = None
    confidence_score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    priority: RecommendationPriority = RecommendationPriority.MEDIUM
    data: BoundedJson = Field(default_factory=dict)


class RecommendationDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=5_000)


Decision = RecommendationDecision  # the name inside the package; the API schema's name is unique across modules


class DecisionResult(BaseModel):
    recommendation: Recommendation
    approval: Approval
    optimization: Optimization | None


class Progress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    progress: int = Field(ge=0, le=100)
    result: BoundedJson | None = None


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actual_savings: Amount | None = None
    actual_improvement: Amount | None = None
    result: BoundedJson = Field(default_factory=dict)


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(min_length=1, max_length=10_000)
    result: BoundedJson | None = None


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=5_000)


class Summary(BaseModel):
    customer_id: uuid.UUID
    recommendations_by_status: dict[RecommendationStatus, int]
    optimizations_by_status: dict[OptimizationStatus, int]
    estimated_savings_pending: Money
    actual_savings_realised: Money


class RecommendationFilters(ListQuery):
    """GET /recommendations: filters of the list."""

    customer_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    status: RecommendationStatus | None = None
    priority: RecommendationPriority | None = None
    type: str | None = None


class OptimizationFilters(ListQuery):
    """GET /optimizations: filters of the list."""

    customer_id: uuid.UUID | None = None
    recommendation_id: uuid.UUID | None = None
    status: OptimizationStatus | None = None
