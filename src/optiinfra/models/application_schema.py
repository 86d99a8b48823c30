"""FOUNDATION-0.2e, application schema: per-request LLM quality metrics, baselines and regressions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from optiinfra.enums import BaselineType, RegressionAction, RegressionSeverity, RegressionType
from optiinfra.models.base import EMPTY_OBJECT, Base, CreatedAt, Timestamps, UUIDPrimaryKey, pg_enum

if TYPE_CHECKING:
    from optiinfra.models.core import Agent, Customer
    from optiinfra.models.workflow_history import WorkflowExecution


def _unit_interval(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} >= 0 AND {column} <= 1", name=f"{column}_range")


def _non_negative(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} >= 0", name=f"{column}_non_negative")


# Issue 16 (migration 016): quality_metrics is partitioned by day of `timestamp`; its partitions (and partitions
# detached for retention, waiting to be dropped) are tables named with this prefix, which are not models of their own.
QUALITY_PARTITION_PREFIX = "quality_metrics_p_"


class QualityMetric(UUIDPrimaryKey, CreatedAt, Base):
    """The quality scores, latency and token counts of one LLM request.

    A table partitioned by range of `timestamp` (one partition a day, migration 016): its primary key includes the
    partition key, and the idempotency key (customer_id, request_id), which cannot be unique across partitions,
    lives in `quality_request_keys`, kept by statement triggers (docs/scale.md)."""

    __tablename__ = "quality_metrics"
    __table_args__ = (
        # Issue 16 (migration 015): the only indexes, with the primary key, that the reads need; each index is paid
        # on every ingested row (docs/scale.md). Every window of one model version:
        Index(
            "ix_quality_metrics_customer_model_version_timestamp",
            "customer_id",
            "model_name",
            "model_version",
            "timestamp",
        ),
        # Time ranges across a customer's versions (gates, OTLP's span lookup): rows arrive in time order, so a
        # block-range index of a few kilobytes serves them.
        Index(
            "ix_quality_metrics_timestamp_brin",
            "timestamp",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
        ),
        *(
            _unit_interval(column)
            for column in (
                "relevance_score",
                "coherence_score",
                "factuality_score",
                "toxicity_score",
                "overall_quality_score",
            )
        ),
        *(_non_negative(column) for column in ("prompt_tokens", "completion_tokens", "latency_ms")),
        {"postgresql_partition_by": 'RANGE ("timestamp")'},
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(255))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[float | None]
    relevance_score: Mapped[float | None]
    coherence_score: Mapped[float | None]
    factuality_score: Mapped[float | None]
    hallucination_detected: Mapped[bool] = mapped_column(default=False, server_default="false")
    toxicity_score: Mapped[float | None]
    overall_quality_score: Mapped[float]
    # Part of the primary key: a unique key of a partitioned table must include the partition key.
    timestamp: Mapped[datetime] = mapped_column(primary_key=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="quality_metrics", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="quality_metrics", lazy="raise")

    def __repr__(self) -> str:
        return f"<QualityMetric id={self.id} model={self.model_name} score={self.overall_quality_score:.2f}>"


class QualityRequestKey(CreatedAt, Base):
    """The idempotency key of one stored quality record: (customer_id, request_id) is unique here, across every
    partition of quality_metrics, and points at the record (id and timestamp, so a lookup by request id reads one
    partition).

    Kept by statement triggers on quality_metrics (migration 016): an insert adds the keys of its rows and fails on
    a key already present, as the unique constraint of the unpartitioned table did; a delete removes them. Dropping
    a partition fires no trigger: retention deletes the keys of a partition before dropping it.

    Deviation from the rule that every table has an `id` primary key (docs/schema.md): the natural key is the
    primary key, because a surrogate id would cost a second index write on every ingested record."""

    __tablename__ = "quality_request_keys"

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    quality_metric_id: Mapped[uuid.UUID]
    quality_metric_timestamp: Mapped[datetime]


# The latency histogram of a rollup: bin 0 holds latencies under 1 ms, bin k (1 <= k < LATENCY_BINS - 1) those in
# [GROWTH^(k-1), GROWTH^k) ms, the last bin everything from about 15 minutes up. A quantile read from it is within
# half a bin (about 5%) of the exact one. Migration 017 writes the same constants into its SQL functions.
LATENCY_BINS = 146
LATENCY_GROWTH = 1.1
# A rollup's toxic_count counts records at or above this toxicity (the quality settings' default threshold).
ROLLUP_TOXIC_THRESHOLD = 0.5


class QualityRollup(UUIDPrimaryKey, Timestamps, Base):
    """The aggregates of one hour of one model version's records on one route (issue 16, migration 017).

    Kept exact by triggers on quality_metrics in the writing transaction (inserts add, deletes subtract, updates do
    both), so charts, fleet summaries and time-of-day reads sum hours instead of reading every record. Counts,
    sums and sums of squares give means and variances; `latency_histogram` gives quantiles.
    """

    __tablename__ = "quality_rollups"
    __table_args__ = (
        UniqueConstraint(
            "customer_id", "model_name", "model_version", "hour_start", "route", name="uq_quality_rollups_key"
        ),
        Index("ix_quality_rollups_hour_start", "hour_start"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    route: Mapped[str] = mapped_column(Text, default="", server_default="")  # metadata.route, '' when none
    hour_start: Mapped[datetime]
    record_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Records with their scores (not metadata.scores_pending): the overall score and hallucination flag count.
    scored_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    overall_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    overall_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    hallucination_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    toxic_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    relevance_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    relevance_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    relevance_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    coherence_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    coherence_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    coherence_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    factuality_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    factuality_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    factuality_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    toxicity_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    toxicity_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    toxicity_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    latency_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    latency_sum: Mapped[float] = mapped_column(default=0.0, server_default="0")
    latency_sum_squares: Mapped[float] = mapped_column(default=0.0, server_default="0")
    latency_histogram: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    prompt_tokens_sum: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completion_tokens_sum: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class QualityBaseline(UUIDPrimaryKey, CreatedAt, Base):
    """The expected quality of one model version, established from a window of quality metrics."""

    __tablename__ = "quality_baselines"
    __table_args__ = (
        Index("ix_quality_baselines_agent_model", "agent_id", "model_name"),
        Index("ix_quality_baselines_customer_model", "customer_id", "model_name"),
        CheckConstraint("sample_size > 0", name="sample_size_positive"),
        *(
            _unit_interval(column)
            for column in (
                "avg_relevance_score",
                "avg_coherence_score",
                "avg_factuality_score",
                "avg_overall_score",
            )
        ),
        _non_negative("p95_latency_ms"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    model_version: Mapped[str] = mapped_column(String(50))
    baseline_type: Mapped[BaselineType] = mapped_column(
        pg_enum(BaselineType, "baseline_type"),
        default=BaselineType.INITIAL,
        server_default=BaselineType.INITIAL.value,
        index=True,
    )
    sample_size: Mapped[int]
    avg_relevance_score: Mapped[float | None]
    avg_coherence_score: Mapped[float | None]
    avg_factuality_score: Mapped[float | None]
    avg_overall_score: Mapped[float]
    p95_latency_ms: Mapped[float | None]
    established_at: Mapped[datetime] = mapped_column(index=True)
    valid_until: Mapped[datetime | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="quality_baselines", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="quality_baselines", lazy="raise")
    regressions: Mapped[list[QualityRegression]] = relationship(
        back_populates="baseline", cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )

    def __repr__(self) -> str:
        return (
            f"<QualityBaseline id={self.id} model={self.model_name}:{self.model_version} "
            f"type={self.baseline_type} score={self.avg_overall_score:.2f}>"
        )


class QualityRegression(UUIDPrimaryKey, Timestamps, Base):
    """A detected drop in quality against a baseline, the action taken, and its resolution."""

    __tablename__ = "quality_regressions"
    __table_args__ = (
        Index("ix_quality_regressions_agent_severity", "agent_id", "severity"),
        Index("ix_quality_regressions_customer_type", "customer_id", "regression_type"),
        # Open regressions are the ones dashboards and the judge look up; a partial index keeps that small.
        Index(
            "ix_quality_regressions_unresolved",
            "customer_id",
            "detected_at",
            postgresql_where="resolved_at IS NULL",
        ),
        _non_negative("sample_size"),
        # Added by migration 007: one open regression per (customer, model, version, type, metric); a later
        # detection updates it instead of adding a duplicate.
        Index(
            "uq_quality_regressions_open",
            "customer_id",
            "model_name",
            "model_version",
            "regression_type",
            "metric_name",
            unique=True,
            postgresql_where="resolved_at IS NULL",
        ),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    # Added by migration 007 (copied from the baseline when the regression is detected).
    model_name: Mapped[str | None] = mapped_column(String(100), sort_order=10)
    model_version: Mapped[str | None] = mapped_column(String(50), sort_order=11)
    baseline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("quality_baselines.id", ondelete="CASCADE"), index=True)
    workflow_execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_executions.id", ondelete="SET NULL"), index=True
    )
    regression_type: Mapped[RegressionType] = mapped_column(pg_enum(RegressionType, "regression_type"), index=True)
    severity: Mapped[RegressionSeverity] = mapped_column(pg_enum(RegressionSeverity, "regression_severity"), index=True)
    detected_at: Mapped[datetime] = mapped_column(index=True)
    metric_name: Mapped[str] = mapped_column(String(100))
    baseline_value: Mapped[float]
    current_value: Mapped[float]
    delta_percent: Mapped[float]
    sample_size: Mapped[int]
    action_taken: Mapped[RegressionAction] = mapped_column(
        pg_enum(RegressionAction, "regression_action"),
        default=RegressionAction.ALERT_ONLY,
        server_default=RegressionAction.ALERT_ONLY.value,
        index=True,
    )
    resolved_at: Mapped[datetime | None]
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict, server_default=EMPTY_OBJECT)

    agent: Mapped[Agent] = relationship(back_populates="quality_regressions", lazy="raise")
    customer: Mapped[Customer] = relationship(back_populates="quality_regressions", lazy="raise")
    baseline: Mapped[QualityBaseline] = relationship(back_populates="regressions", lazy="raise")
    workflow: Mapped[WorkflowExecution | None] = relationship(back_populates="quality_regressions", lazy="raise")

    @property
    def is_resolved(self) -> bool:
        """Whether the regression has been resolved."""
        return self.resolved_at is not None

    @property
    def time_to_resolve_minutes(self) -> float | None:
        """Minutes from detection to resolution, or None while unresolved."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.detected_at).total_seconds() / 60

    def __repr__(self) -> str:
        return (
            f"<QualityRegression id={self.id} type={self.regression_type} severity={self.severity} "
            f"resolved={self.is_resolved}>"
        )
