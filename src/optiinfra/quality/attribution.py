"""Attribution before action (issue 10, item 4): roll back only an optimization the evidence names.

An optimization is attributable to a regressed window when the window's records carry its id
(`metadata.optimization_id`) or ran on its instances (`metadata.instance_id` among the instances of its
recommendation, `data["instances"]`, as spot migrations record them). Only executing or completed optimizations of
the same customer count. Otherwise nothing is rolled back: the action is `manual_review`, and the regression lists
the optimizations that were active (executing or completed, not rolled back) in its window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, String, bindparam, func, select
from sqlalchemy.orm import Session

from optiinfra.models import Optimization, OptimizationStatus, QualityMetric, Recommendation

IN_EFFECT = (OptimizationStatus.EXECUTING, OptimizationStatus.COMPLETED)


@dataclass
class Attribution:
    optimization: Optimization | None
    evidence: dict[str, Any] = field(default_factory=dict)
    active: list[dict[str, Any]] = field(default_factory=list)


def _uuids(values: set[str]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            continue
    return out


def window_tags(
    session: Session, customer_id: uuid.UUID, model_name: str, model_version: str, start: datetime, end: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Per optimization id and per instance id named by the window's records: how many records name it."""
    optimization = QualityMetric.metadata_["optimization_id"].astext
    instance = QualityMetric.metadata_["instance_id"].astext
    rows = session.execute(
        select(optimization, instance, func.count())
        .where(
            QualityMetric.customer_id == customer_id,
            QualityMetric.model_name == model_name,
            QualityMetric.model_version == model_version,
            QualityMetric.timestamp >= start,
            QualityMetric.timestamp < end,
        )
        .group_by(optimization, instance)
    ).all()
    optimizations: dict[str, int] = {}
    instances: dict[str, int] = {}
    for opt, inst, count in rows:
        if opt:
            optimizations[opt] = optimizations.get(opt, 0) + int(count)
        if inst:
            instances[inst] = instances.get(inst, 0) + int(count)
    return optimizations, instances


def active_optimizations(session: Session, customer_id: uuid.UUID, end: datetime) -> list[dict[str, Any]]:
    """The customer's optimizations in effect during a window ending at `end` (started before it, executing or
    completed, not rolled back)."""
    rows = session.execute(
        select(Optimization, Recommendation.type)
        .join(Recommendation, Recommendation.id == Optimization.recommendation_id)
        .where(
            Optimization.customer_id == customer_id,
            Optimization.status.in_(IN_EFFECT),
            func.coalesce(Optimization.started_at, Optimization.created_at) < end,
        )
        .order_by(func.coalesce(Optimization.started_at, Optimization.created_at).desc())
        .limit(20)
    ).all()
    return [
        {
            "optimization_id": str(optimization.id),
            "type": kind,
            "status": str(optimization.status),
            "started_at": optimization.started_at.isoformat() if optimization.started_at else None,
            "completed_at": optimization.completed_at.isoformat() if optimization.completed_at else None,
        }
        for optimization, kind in rows
    ]


def attribute(
    session: Session,
    customer_id: uuid.UUID,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
) -> Attribution:
    """The optimization the window's evidence names, with that evidence; else None and the active changes."""
    optimizations, instances = window_tags(session, customer_id, model_name, model_version, start, end)
    named_ids = _uuids(set(optimizations))
    if named_ids:
        named = session.scalar(
            select(Optimization)
            .where(
                Optimization.customer_id == customer_id,
                Optimization.id.in_(named_ids),
                Optimization.status.in_(IN_EFFECT),
            )
            .order_by(Optimization.started_at.desc().nulls_last())
            .limit(1)
        )
        if named is not None:
            return Attribution(
                named,
                {
                    "by": "metadata.optimization_id",
                    "records_naming_it": optimizations.get(str(named.id), 0),
                    "window": [start.isoformat(), end.isoformat()],
                },
            )
    if instances:
        ids = bindparam("instance_ids", sorted(instances), type_=ARRAY(String))
        on_instances = session.scalar(
            select(Optimization)
            .join(Recommendation, Recommendation.id == Optimization.recommendation_id)
            .where(
                Optimization.customer_id == customer_id,
                Optimization.status.in_(IN_EFFECT),
                Recommendation.data["instances"].op("?|")(ids),
            )
            .order_by(Optimization.started_at.desc().nulls_last())
            .limit(1)
        )
        if on_instances is not None:
            recommendation = session.get(Recommendation, on_instances.recommendation_id)
            moved = set(recommendation.data.get("instances", [])) if recommendation else set()
            matched = sorted(set(instances) & moved)
            return Attribution(
                on_instances,
                {
                    "by": "metadata.instance_id",
                    "instances": matched,
                    "records_on_them": sum(instances[i] for i in matched),
                    "window": [start.isoformat(), end.isoformat()],
                },
            )
    return Attribution(None, {}, active_optimizations(session, customer_id, end))
