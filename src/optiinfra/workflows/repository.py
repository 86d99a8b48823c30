"""Queries the workflows read: instance utilization history and the latest scaling events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from optiinfra.models import ResourceMetric, ResourceType, ScalingEvent

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets start on round times


@dataclass(frozen=True)
class InstanceHistory:
    instance_id: str
    instance_type: str | None
    resource_type: ResourceType
    hourly_utilization: list[float]  # percent, oldest first


def utilization_history(
    session: Session, customer_id: uuid.UUID, since: datetime, bucket: timedelta
) -> list[InstanceHistory]:
    """Per instance, average utilization per bucket: GPU utilization where the instance reports it, else CPU."""
    bucket_start = func.date_bin(literal(bucket), ResourceMetric.timestamp, literal(ORIGIN))
    rows = session.execute(
        select(
            ResourceMetric.instance_id,
            ResourceMetric.resource_type,
            bucket_start.label("bucket"),
            func.avg(ResourceMetric.metric_value),
            func.max(ResourceMetric.metadata_["instance_type"].astext),
        )
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.metric_name == "utilization",
            ResourceMetric.resource_type.in_([ResourceType.GPU, ResourceType.CPU]),
        )
        .group_by(ResourceMetric.instance_id, ResourceMetric.resource_type, bucket_start)
        .order_by(ResourceMetric.instance_id, bucket_start)
    ).all()
    series: dict[tuple[str, ResourceType], list[float]] = {}
    types: dict[str, str | None] = {}
    for instance_id, resource_type, _bucket, average, instance_type in rows:
        series.setdefault((instance_id, resource_type), []).append(float(average))
        types[instance_id] = types.get(instance_id) or instance_type
    histories = []
    for instance_id in sorted(types):
        resource_type = ResourceType.GPU if (instance_id, ResourceType.GPU) in series else ResourceType.CPU
        histories.append(
            InstanceHistory(instance_id, types[instance_id], resource_type, series[(instance_id, resource_type)])
        )
    return histories


def fleet_utilization(session: Session, customer_id: uuid.UUID, since: datetime, bucket: timedelta) -> list[float]:
    """Average GPU utilization (percent) across the customer's fleet per bucket, oldest first."""
    bucket_start = func.date_bin(literal(bucket), ResourceMetric.timestamp, literal(ORIGIN))
    rows = session.execute(
        select(bucket_start, func.avg(ResourceMetric.metric_value))
        .where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= since,
            ResourceMetric.metric_name == "utilization",
            ResourceMetric.resource_type == ResourceType.GPU,
        )
        .group_by(bucket_start)
        .order_by(bucket_start)
    ).all()
    return [float(row[1]) for row in rows]


def fleet_size(session: Session, customer_id: uuid.UUID, since: datetime) -> int:
    """Instances reporting GPU utilization since `since`."""
    return int(
        session.scalar(
            select(func.count(func.distinct(ResourceMetric.instance_id))).where(
                ResourceMetric.customer_id == customer_id,
                ResourceMetric.timestamp >= since,
                ResourceMetric.resource_type == ResourceType.GPU,
            )
        )
        or 0
    )


def last_scaling(session: Session, customer_id: uuid.UUID) -> ScalingEvent | None:
    return session.scalar(
        select(ScalingEvent)
        .where(ScalingEvent.customer_id == customer_id, ScalingEvent.success.is_(True))
        .order_by(ScalingEvent.executed_at.desc())
        .limit(1)
    )
