"""Recommendation, approval and optimization queries, always scoped to the caller."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from optiinfra.auth.principal import Principal
from optiinfra.db.queries import get_row, list_page
from optiinfra.models import (
    Optimization,
    OptimizationStatus,
    Recommendation,
    RecommendationStatus,
)
from optiinfra.pagination import Page
from optiinfra.recommendations.schemas import OptimizationFilters, RecommendationFilters

# A recommendation's detail loads its decisions and optimizations with it (relationships are lazy="raise").
_CHILDREN = (selectinload(Recommendation.approvals), selectinload(Recommendation.optimizations))


def get_recommendation(
    session: Session,
    principal: Principal,
    recommendation_id: uuid.UUID,
    *,
    for_update: bool = False,
    with_children: bool = False,
) -> Recommendation:
    return get_row(
        session,
        Recommendation,
        recommendation_id,
        principal,
        "recommendation",
        "recommendation_id",
        for_update=for_update,
        options=_CHILDREN if with_children else (),
    )


def list_recommendations(
    session: Session, principal: Principal, filters: RecommendationFilters
) -> Page[Recommendation]:
    return list_page(session, Recommendation, filters, principal=principal)


def get_optimization(
    session: Session, principal: Principal, optimization_id: uuid.UUID, *, for_update: bool = False
) -> Optimization:
    return get_row(
        session, Optimization, optimization_id, principal, "optimization", "optimization_id", for_update=for_update
    )


def lock_recommendation_of(session: Session, optimization: Optimization) -> Recommendation:
    """The optimization's recommendation, locked; always lock the recommendation before its optimization."""
    recommendation = session.scalar(
        select(Recommendation)
        .where(Recommendation.id == optimization.recommendation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert recommendation is not None  # the foreign key guarantees it
    return recommendation


def list_optimizations(session: Session, principal: Principal, filters: OptimizationFilters) -> Page[Optimization]:
    return list_page(session, Optimization, filters, principal=principal)


def recommendation_counts(session: Session, customer_id: uuid.UUID) -> dict[RecommendationStatus, int]:
    rows = session.execute(
        select(Recommendation.status, func.count())
        .where(Recommendation.customer_id == customer_id)
        .group_by(Recommendation.status)
    )
    return {status: count for status, count in rows}


def optimization_counts(session: Session, customer_id: uuid.UUID) -> dict[OptimizationStatus, int]:
    rows = session.execute(
        select(Optimization.status, func.count())
        .where(Optimization.customer_id == customer_id)
        .group_by(Optimization.status)
    )
    return {status: count for status, count in rows}


def pending_estimated_savings(session: Session, customer_id: uuid.UUID) -> Decimal:
    """Estimated savings of recommendations not yet decided, approved or executing."""
    total = session.scalar(
        select(func.coalesce(func.sum(Recommendation.estimated_savings), 0)).where(
            Recommendation.customer_id == customer_id,
            Recommendation.status.in_(
                [RecommendationStatus.PENDING, RecommendationStatus.APPROVED, RecommendationStatus.EXECUTING]
            ),
        )
    )
    return Decimal(total or 0)


def realised_savings(session: Session, customer_id: uuid.UUID) -> Decimal:
    """Actual savings of completed optimizations that were not rolled back."""
    total = session.scalar(
        select(func.coalesce(func.sum(Optimization.actual_savings), 0)).where(
            Optimization.customer_id == customer_id, Optimization.status == OptimizationStatus.COMPLETED
        )
    )
    return Decimal(total or 0)
