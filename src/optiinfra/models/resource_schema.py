"""FOUNDATION-0.2d, resource schema: per-instance resource metrics and the scaling events acting on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from optiinfra.enums import ResourceType, ScalingEventType
from optiinfra.models.base import EMPTY_OBJECT, Base, CreatedAt, Timestamps, UUIDPrimaryKey, pg_enum

if TYPE_CHECKING:
    from optiinfra.models.core import Agent, Customer
    from optiinfra.models.workflow_history import WorkflowExecution


class ResourceMetric(UUIDPrimaryKey, CreatedAt, Base):
    """One sample of one resource of one instance (GPU utilization, memory used, temperature, …)."""

    __tablename__ = "resource_metrics"
    __table_args__ = (
        Index("ix_resource_metrics_customer_id_resource_type", "customer_id", "resource_type"),
        Index("ix_resource_metrics_agent_id_instance_id", "agent_id", "instance_id"),
        Index("ix_resource_metrics_instance_id_timestamp", "instance_id", "timestamp"),
        Index("ix_resource_metrics_resource_type_metric_name", "resource_type", "metric_name"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(String(255))
    resource_type: Mapped[ResourceType] = mapped_column(pg_enum(ResourceType, "resource_type"))
    metric_name: Mapped[str] = mapped_column(String(100))
    metric_value: Mapped[float]
    unit: Mapped[str] = mapped_column(String(50))
    timestamp: Mapped[datetime] = mapped_column(index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="resource_metrics", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="resource_metrics", lazy="raise")


class ScalingEvent(UUIDPrimaryKey, Timestamps, Base):
    """A scaling action on a customer's fleet, with the state before and after it."""

    __tablename__ = "scaling_events"
    __table_args__ = (
        Index("ix_scaling_events_agent_id_event_type", "agent_id", "event_type"),
        Index("ix_scaling_events_customer_id_success", "customer_id", "success"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    workflow_execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_executions.id", ondelete="SET NULL"), index=True
    )
    event_type: Mapped[ScalingEventType] = mapped_column(pg_enum(ScalingEventType, "scaling_event_type"))
    trigger_reason: Mapped[str] = mapped_column(String(500))
    before_state: Mapped[dict[str, Any]]
    after_state: Mapped[dict[str, Any]]
    success: Mapped[bool] = mapped_column(default=False, server_default="false")
    error_details: Mapped[dict[str, Any] | None]
    executed_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="scaling_events", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="scaling_events", lazy="raise")
    workflow_execution: Mapped[WorkflowExecution | None] = relationship(back_populates="scaling_events", lazy="raise")

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from execution to completion, or None while the event has not completed."""
        if self.completed_at is None:
            return None
        return (self.completed_at - self.executed_at).total_seconds()
