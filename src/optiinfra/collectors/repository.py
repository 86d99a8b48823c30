"""Prometheus source queries; every read for a caller goes through its tenancy scope."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.collectors.schemas import PrometheusSourceFilters
from optiinfra.db.queries import get_row, list_page
from optiinfra.models import AgentMetric, PrometheusSource, ResourceMetric
from optiinfra.pagination import Page


def get_source(
    session: Session, principal: Principal, source_id: uuid.UUID, *, for_update: bool = False
) -> PrometheusSource:
    return get_row(
        session, PrometheusSource, source_id, principal, "Prometheus source", "source_id", for_update=for_update
    )


def list_sources(session: Session, principal: Principal, filters: PrometheusSourceFilters) -> Page[PrometheusSource]:
    return list_page(session, PrometheusSource, filters, principal=principal)


def enabled_source_ids(session: Session) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(PrometheusSource.id).where(PrometheusSource.enabled.is_(True)).order_by(PrometheusSource.created_at)
        )
    )


def stored_resource_keys(
    session: Session, source_id: uuid.UUID, customer_id: uuid.UUID, start: datetime, end: datetime
) -> set[tuple[str, str, str, datetime]]:
    """(instance, resource type, metric, timestamp) of the rows this source already stored in [start, end]."""
    rows = session.execute(
        select(
            ResourceMetric.instance_id,
            ResourceMetric.resource_type,
            ResourceMetric.metric_name,
            ResourceMetric.timestamp,
        ).where(
            ResourceMetric.customer_id == customer_id,
            ResourceMetric.timestamp >= start,
            ResourceMetric.timestamp <= end,
            ResourceMetric.metadata_["source_id"].astext == str(source_id),
        )
    ).all()
    return {(row[0], str(row[1]), row[2], row[3]) for row in rows}


def stored_agent_keys(
    session: Session, source_id: uuid.UUID, agent_id: uuid.UUID, start: datetime, end: datetime
) -> set[tuple[str, str, str, datetime]]:
    """(instance, model, metric, time) of the serving samples this source already stored in [start, end]."""
    rows = session.execute(
        select(
            AgentMetric.tags["instance_id"].astext,
            AgentMetric.tags["model_name"].astext,
            AgentMetric.metric_name,
            AgentMetric.recorded_at,
        ).where(
            AgentMetric.agent_id == agent_id,
            AgentMetric.recorded_at >= start,
            AgentMetric.recorded_at <= end,
            AgentMetric.tags["source_id"].astext == str(source_id),
        )
    ).all()
    return {(row[0] or "", row[1] or "", row[2], row[3]) for row in rows}
