"""FOUNDATION-0.2a, core schema: customers, agents, events, recommendations, approvals, optimizations."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import conv

from optiinfra.enums import (
    AgentStatus,
    AgentType,
    ApprovalStatus,
    CustomerPlan,
    CustomerStatus,
    EventSeverity,
    OptimizationStatus,
    RecommendationPriority,
    RecommendationStatus,
)
from optiinfra.models.base import (
    EMPTY_ARRAY,
    EMPTY_OBJECT,
    NOW,
    Base,
    CreatedAt,
    Timestamps,
    UUIDPrimaryKey,
    pg_enum,
)

if TYPE_CHECKING:
    from optiinfra.models.agent_state import AgentCapability, AgentConfig, AgentMetric, AgentState
    from optiinfra.models.application_schema import QualityBaseline, QualityMetric, QualityRegression
    from optiinfra.models.resource_schema import ResourceMetric, ScalingEvent
    from optiinfra.models.workflow_history import WorkflowExecution


# Relationship options for a parent whose children the database deletes (ON DELETE CASCADE): the ORM
# deletes loaded children itself and leaves the rest to PostgreSQL instead of loading them first.
CASCADE_CHILDREN: dict[str, Any] = {"cascade": "all, delete-orphan", "passive_deletes": True, "lazy": "raise"}


class Customer(UUIDPrimaryKey, Timestamps, Base):
    """A tenant: a company running LLM applications whose infrastructure OptiInfra optimizes."""

    __tablename__ = "customers"

    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    # SHA-256 hex digest of the customer's API key; the key itself is never stored.
    api_key: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    plan: Mapped[CustomerPlan] = mapped_column(
        pg_enum(CustomerPlan, "customerplan"),
        default=CustomerPlan.FREE,
        server_default=CustomerPlan.FREE.value,
    )
    status: Mapped[CustomerStatus] = mapped_column(
        pg_enum(CustomerStatus, "customerstatus"),
        default=CustomerStatus.ACTIVE,
        server_default=CustomerStatus.ACTIVE.value,
        index=True,
    )
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    events: Mapped[list[Event]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    recommendations: Mapped[list[Recommendation]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    optimizations: Mapped[list[Optimization]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    workflow_executions: Mapped[list[WorkflowExecution]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    resource_metrics: Mapped[list[ResourceMetric]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    scaling_events: Mapped[list[ScalingEvent]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    quality_metrics: Mapped[list[QualityMetric]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    quality_baselines: Mapped[list[QualityBaseline]] = relationship(back_populates="customer", **CASCADE_CHILDREN)
    quality_regressions: Mapped[list[QualityRegression]] = relationship(back_populates="customer", **CASCADE_CHILDREN)

    def __repr__(self) -> str:
        return f"<Customer id={self.id} name={self.name!r} plan={self.plan} status={self.status}>"


class Agent(UUIDPrimaryKey, Timestamps, Base):
    """A registered agent process (orchestrator, cost, performance, resource or application)."""

    __tablename__ = "agents"
    __table_args__ = (
        Index("idx_agent_type", "type"),
        Index("idx_agent_status", "status"),
        Index("idx_agent_heartbeat", "last_heartbeat"),
        UniqueConstraint("type", "name", name="uq_agent_type_name"),
        CheckConstraint("heartbeat_interval_seconds > 0", name="heartbeat_interval_positive"),
    )

    type: Mapped[AgentType] = mapped_column(pg_enum(AgentType, "agenttype"))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[AgentStatus] = mapped_column(
        pg_enum(AgentStatus, "agentstatus"),
        default=AgentStatus.STARTING,
        server_default=AgentStatus.STARTING.value,
    )
    endpoint: Mapped[str | None] = mapped_column(String(255))
    capabilities: Mapped[list[Any]] = mapped_column(default=list, server_default=EMPTY_ARRAY)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)
    last_heartbeat: Mapped[datetime | None]
    # Added by migration 006: the agent's own API key (SHA-256 digest) and how often it promises to heartbeat.
    api_key_digest: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, sort_order=50)
    heartbeat_interval_seconds: Mapped[int] = mapped_column(default=30, server_default="30", sort_order=51)

    # events.agent_id is ON DELETE SET NULL: the audit log outlives the agent, so no delete cascade here.
    events: Mapped[list[Event]] = relationship(back_populates="agent", passive_deletes=True, lazy="raise")
    recommendations: Mapped[list[Recommendation]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    optimizations: Mapped[list[Optimization]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    configs: Mapped[list[AgentConfig]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    state: Mapped[AgentState | None] = relationship(
        back_populates="agent",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
        uselist=False,
    )
    agent_capabilities: Mapped[list[AgentCapability]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    metrics: Mapped[list[AgentMetric]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    workflow_executions: Mapped[list[WorkflowExecution]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    resource_metrics: Mapped[list[ResourceMetric]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    scaling_events: Mapped[list[ScalingEvent]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    quality_metrics: Mapped[list[QualityMetric]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    quality_baselines: Mapped[list[QualityBaseline]] = relationship(back_populates="agent", **CASCADE_CHILDREN)
    quality_regressions: Mapped[list[QualityRegression]] = relationship(back_populates="agent", **CASCADE_CHILDREN)

    def __repr__(self) -> str:
        return f"<Agent id={self.id} type={self.type} name={self.name!r} status={self.status}>"


class AgentCustomer(UUIDPrimaryKey, CreatedAt, Base):
    """An agent assigned to a customer it serves (migration 009). An agent acts only for its assigned customers;
    `optiinfra.tenancy` applies the assignment to every query an agent makes."""

    __tablename__ = "agent_customers"
    __table_args__ = (
        UniqueConstraint("agent_id", "customer_id", name="uq_agent_customer"),
        Index("idx_agent_customers_customer_id", "customer_id"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))


class Event(UUIDPrimaryKey, CreatedAt, Base):
    """One entry of the append-only audit log."""

    __tablename__ = "events"

    # NULL (since migration 006) for platform events that belong to no tenant, such as an agent's health change;
    # only the operator sees those.
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    severity: Mapped[EventSeverity] = mapped_column(
        pg_enum(EventSeverity, "eventseverity"),
        default=EventSeverity.INFO,
        server_default=EventSeverity.INFO.value,
        index=True,
    )
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW, index=True, sort_order=100)

    customer: Mapped[Customer | None] = relationship(back_populates="events", lazy="raise")
    agent: Mapped[Agent | None] = relationship(back_populates="events", lazy="raise")

    def __repr__(self) -> str:
        return f"<Event id={self.id} type={self.event_type!r} severity={self.severity}>"


class Recommendation(UUIDPrimaryKey, Timestamps, Base):
    """An optimization an agent proposes to a customer, with its estimated impact."""

    __tablename__ = "recommendations"
    __table_args__ = (
        CheckConstraint("confidence_score >= 0 AND confidence_score <= 1", name=conv("check_confidence_range")),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    estimated_savings: Mapped[Decimal | None]
    estimated_improvement: Mapped[Decimal | None]
    confidence_score: Mapped[float] = mapped_column(default=0.0, server_default="0")
    priority: Mapped[RecommendationPriority] = mapped_column(
        pg_enum(RecommendationPriority, "recommendationpriority"),
        default=RecommendationPriority.MEDIUM,
        server_default=RecommendationPriority.MEDIUM.value,
        index=True,
    )
    status: Mapped[RecommendationStatus] = mapped_column(
        pg_enum(RecommendationStatus, "recommendationstatus"),
        default=RecommendationStatus.PENDING,
        server_default=RecommendationStatus.PENDING.value,
        index=True,
    )
    data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    created_at: Mapped[datetime] = mapped_column(server_default=NOW, index=True, sort_order=100)
    approved_at: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship(back_populates="recommendations", lazy="raise")
    agent: Mapped[Agent] = relationship(back_populates="recommendations", lazy="raise")
    approvals: Mapped[list[Approval]] = relationship(back_populates="recommendation", **CASCADE_CHILDREN)
    optimizations: Mapped[list[Optimization]] = relationship(back_populates="recommendation", **CASCADE_CHILDREN)

    def __repr__(self) -> str:
        return f"<Recommendation id={self.id} type={self.type!r} status={self.status}>"


class Approval(UUIDPrimaryKey, Timestamps, Base):
    """A customer's decision on a recommendation, and who made it."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index("idx_approval_rec", "recommendation_id"),
        Index("idx_approval_status", "status"),
    )

    recommendation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recommendations.id", ondelete="CASCADE"))
    approved_by: Mapped[str] = mapped_column(String(255))
    status: Mapped[ApprovalStatus] = mapped_column(
        pg_enum(ApprovalStatus, "approvalstatus"),
        default=ApprovalStatus.PENDING,
        server_default=ApprovalStatus.PENDING.value,
    )
    comment: Mapped[str | None] = mapped_column(Text)

    recommendation: Mapped[Recommendation] = relationship(back_populates="approvals", lazy="raise")

    def __repr__(self) -> str:
        return f"<Approval id={self.id} recommendation_id={self.recommendation_id} status={self.status}>"


class Optimization(UUIDPrimaryKey, CreatedAt, Base):
    """The execution of an approved recommendation: progress, results, actual impact, rollback."""

    __tablename__ = "optimizations"
    __table_args__ = (
        Index("idx_opt_rec", "recommendation_id"),
        Index("idx_opt_customer", "customer_id"),
        Index("idx_opt_agent", "agent_id"),
        Index("idx_opt_status", "status"),
        Index("idx_opt_customer_status", "customer_id", "status"),
        CheckConstraint("progress >= 0 AND progress <= 100", name=conv("check_progress_range")),
    )

    recommendation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("recommendations.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    status: Mapped[OptimizationStatus] = mapped_column(
        pg_enum(OptimizationStatus, "optimizationstatus"),
        default=OptimizationStatus.QUEUED,
        server_default=OptimizationStatus.QUEUED.value,
    )
    progress: Mapped[int] = mapped_column(default=0, server_default="0")
    result: Mapped[dict[str, Any] | None] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    error: Mapped[str | None] = mapped_column(Text)
    actual_savings: Mapped[Decimal | None]
    actual_improvement: Mapped[Decimal | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    rolled_back_at: Mapped[datetime | None]

    recommendation: Mapped[Recommendation] = relationship(back_populates="optimizations", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="optimizations", lazy="raise")
    agent: Mapped[Agent] = relationship(back_populates="optimizations", lazy="raise")

    def __repr__(self) -> str:
        return f"<Optimization id={self.id} status={self.status} progress={self.progress}%>"
