"""FOUNDATION-0.2c, workflow history: executions, their ordered steps, and the artifacts they produce."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from optiinfra.enums import ArtifactType, StepStatus, WorkflowStatus, WorkflowType
from optiinfra.models.base import EMPTY_OBJECT, Base, Timestamps, UUIDPrimaryKey, pg_enum

if TYPE_CHECKING:
    from optiinfra.models.agent_state import AgentState
    from optiinfra.models.application_schema import QualityRegression
    from optiinfra.models.core import Agent, Customer
    from optiinfra.models.resource_schema import ScalingEvent


class WorkflowExecution(UUIDPrimaryKey, Timestamps, Base):
    """One run of a named workflow by an agent for a customer."""

    __tablename__ = "workflow_executions"
    __table_args__ = (
        Index("ix_workflow_executions_agent_id_status", "agent_id", "status"),
        Index("ix_workflow_executions_customer_id_workflow_type", "customer_id", "workflow_type"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    workflow_type: Mapped[WorkflowType] = mapped_column(pg_enum(WorkflowType, "workflow_type"), index=True)
    status: Mapped[WorkflowStatus] = mapped_column(
        pg_enum(WorkflowStatus, "workflow_status"),
        default=WorkflowStatus.PENDING,
        server_default=WorkflowStatus.PENDING.value,
        index=True,
    )
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]
    input_data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    output_data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    error_details: Mapped[dict[str, Any] | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="workflow_executions", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="workflow_executions", lazy="raise")
    steps: Mapped[list[WorkflowStep]] = relationship(
        back_populates="execution",
        order_by="WorkflowStep.step_order",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )
    artifacts: Mapped[list[WorkflowArtifact]] = relationship(
        back_populates="execution", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )
    # The foreign keys below are ON DELETE SET NULL: these rows outlive the execution.
    scaling_events: Mapped[list[ScalingEvent]] = relationship(
        back_populates="workflow_execution", passive_deletes=True, lazy="raise"
    )
    quality_regressions: Mapped[list[QualityRegression]] = relationship(
        back_populates="workflow", passive_deletes=True, lazy="raise"
    )
    current_for_states: Mapped[list[AgentState]] = relationship(
        back_populates="current_workflow", passive_deletes=True, lazy="raise"
    )


class WorkflowStep(UUIDPrimaryKey, Timestamps, Base):
    """One ordered step of a workflow execution, with its retries."""

    __tablename__ = "workflow_steps"
    __table_args__ = (
        Index("ix_workflow_steps_workflow_execution_id_step_order", "workflow_execution_id", "step_order"),
        Index("ix_workflow_steps_workflow_execution_id_status", "workflow_execution_id", "status"),
        Index("ix_workflow_steps_step_name_status", "step_name", "status"),
        CheckConstraint("retry_count >= 0", name="retry_count_non_negative"),
        CheckConstraint("max_retries >= 0", name="max_retries_non_negative"),
    )

    workflow_execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_executions.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(255))
    step_order: Mapped[int]
    status: Mapped[StepStatus] = mapped_column(
        pg_enum(StepStatus, "step_status"),
        default=StepStatus.PENDING,
        server_default=StepStatus.PENDING.value,
        index=True,
    )
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    input_data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    output_data: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=EMPTY_OBJECT)
    error_details: Mapped[dict[str, Any] | None]
    retry_count: Mapped[int] = mapped_column(default=0, server_default="0")
    max_retries: Mapped[int] = mapped_column(default=3, server_default="3")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    execution: Mapped[WorkflowExecution] = relationship(back_populates="steps", lazy="raise")
    artifacts: Mapped[list[WorkflowArtifact]] = relationship(
        back_populates="step", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class WorkflowArtifact(UUIDPrimaryKey, Timestamps, Base):
    """A file or URL a workflow produced (report, chart, log, …); no step means the whole execution's."""

    __tablename__ = "workflow_artifacts"
    __table_args__ = (
        Index(
            "ix_workflow_artifacts_workflow_execution_id_artifact_type",
            "workflow_execution_id",
            "artifact_type",
        ),
        Index("ix_workflow_artifacts_workflow_step_id_artifact_type", "workflow_step_id", "artifact_type"),
        CheckConstraint("artifact_size_bytes >= 0", name="artifact_size_non_negative"),
    )

    workflow_execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_executions.id", ondelete="CASCADE"))
    workflow_step_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workflow_steps.id", ondelete="CASCADE"))
    artifact_type: Mapped[ArtifactType] = mapped_column(pg_enum(ArtifactType, "artifact_type"))
    artifact_name: Mapped[str] = mapped_column(String(255))
    artifact_path: Mapped[str] = mapped_column(Text)
    artifact_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(100))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    execution: Mapped[WorkflowExecution] = relationship(back_populates="artifacts", lazy="raise")
    step: Mapped[WorkflowStep | None] = relationship(back_populates="artifacts", lazy="raise")
