"""FOUNDATION-0.2b, agent state: configuration, live state, capabilities and metrics of each agent."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from optiinfra.enums import AgentStatusDetail, ConfigType, MetricType
from optiinfra.models.base import (
    EMPTY_ARRAY,
    EMPTY_OBJECT,
    NOW,
    Base,
    Timestamps,
    UUIDPrimaryKey,
    pg_enum,
)

if TYPE_CHECKING:
    from optiinfra.models.core import Agent
    from optiinfra.models.workflow_history import WorkflowExecution


class AgentConfig(UUIDPrimaryKey, Timestamps, Base):
    """One configuration value of an agent, kept as text and validated against `config_type` on write."""

    __tablename__ = "agent_configs"
    __table_args__ = (UniqueConstraint("agent_id", "config_key", name="uq_agent_config"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    config_key: Mapped[str] = mapped_column(String(255), index=True)
    config_value: Mapped[str] = mapped_column(Text)
    config_type: Mapped[ConfigType] = mapped_column(
        pg_enum(ConfigType, "configtype"), default=ConfigType.STRING, server_default=ConfigType.STRING.value
    )
    description: Mapped[str | None] = mapped_column(Text)

    agent: Mapped[Agent] = relationship(back_populates="configs", lazy="raise")


class AgentState(UUIDPrimaryKey, Timestamps, Base):
    """The live state of one agent: status, running workflows, resource locks, resource usage."""

    __tablename__ = "agent_states"

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), unique=True)
    current_status: Mapped[AgentStatusDetail] = mapped_column(
        pg_enum(AgentStatusDetail, "agentstatusdetail"),
        default=AgentStatusDetail.IDLE,
        server_default=AgentStatusDetail.IDLE.value,
        index=True,
    )
    active_workflows: Mapped[list[Any]] = mapped_column(default=list, server_default=EMPTY_ARRAY)
    locks: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    last_activity: Mapped[datetime] = mapped_column(server_default=NOW, index=True)
    resource_usage: Mapped[dict[str, Any] | None] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)
    # Added by migration 003, which creates the table it points to.
    current_workflow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_executions.id", ondelete="SET NULL"), index=True
    )

    agent: Mapped[Agent] = relationship(back_populates="state", lazy="raise")
    current_workflow: Mapped[WorkflowExecution | None] = relationship(back_populates="current_for_states", lazy="raise")


class AgentCapability(UUIDPrimaryKey, Timestamps, Base):
    """One capability an agent offers, with its version and whether it is enabled."""

    __tablename__ = "agent_capabilities"
    __table_args__ = (UniqueConstraint("agent_id", "capability_name", name="uq_agent_capability"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    capability_name: Mapped[str] = mapped_column(String(255), index=True)
    capability_version: Mapped[str] = mapped_column(String(50), default="1.0.0", server_default="1.0.0")
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true", index=True)
    config: Mapped[dict[str, Any] | None] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    description: Mapped[str | None] = mapped_column(Text)

    agent: Mapped[Agent] = relationship(back_populates="agent_capabilities", lazy="raise")


class AgentMetric(UUIDPrimaryKey, Base):
    """One sample of an agent's own time series (requests handled, queue depth, …)."""

    __tablename__ = "agent_metrics"
    __table_args__ = (
        Index("ix_agent_metrics_agent_id_metric_name", "agent_id", "metric_name"),
        Index("ix_agent_metrics_agent_id_recorded_at", "agent_id", "recorded_at"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    metric_name: Mapped[str] = mapped_column(String(255), index=True)
    metric_value: Mapped[float]
    metric_type: Mapped[MetricType] = mapped_column(
        pg_enum(MetricType, "metrictype"), default=MetricType.GAUGE, server_default=MetricType.GAUGE.value
    )
    tags: Mapped[dict[str, Any] | None] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    recorded_at: Mapped[datetime] = mapped_column(server_default=NOW, index=True)

    agent: Mapped[Agent] = relationship(back_populates="metrics", lazy="raise")
