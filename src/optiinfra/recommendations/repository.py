"""Recommendation, approval and optimization queries, always scoped to the caller."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from optiinfra.auth.principal import Principal
from optiinfra.db.queries import list_page
from optiinfra.errors import NotFoundError
from optiinfra.models import (
    Optimization,
    OptimizationStatus,
    Recommendation,
    RecommendationStatus,
)
from optiinfra.pagination import Page
from optiinfra.recommendations.schemas import OptimizationFilters, RecommendationFilters
from optiinfra.tenancy import scope_to_caller


def get_recommendation(
    session: Session,
    principal: Principal,
    recommendation_id: uuid.UUID,
    *,
    for_update: bool = False,
    with_children: bool = False,
) -> Recommendation:
    statement = scope_to_caller(
        select(Recommendation).where(Recommendation.id == recommendation_id),
        principal,
        customer_column=Recommendation.customer_id,
        agent_column=Recommendation.agent_id,
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    if with_children:
        statement = statement.options(
            selectinload(Recommendation.approvals), selectinload(Recommendation.optimizations)
        )
    recommendation = session.scalar(statement)
    if recommendation is None:
        raise NotFoundError("No such recommendation.", details={"recommendation_id": str(recommendation_id)})
    return recommendation


def list_recommendations(
    session: Session, principal: Principal, filters: RecommendationFilters
) -> Page[Recommendation]:
    return list_page(session, Recommendation, filters, principal=principal)


def get_optimization(
    session: Session, principal: Principal, optimization_id: uuid.UUID, *, for_update: bool = False
) -> Optimization:
    statement = scope_to_caller(
        select(Optimization).where(Optimization.id == optimization_id),
        principal,
        customer_column=Optimization.customer_id,
        agent_column=Optimization.agent_id,
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    optimization = session.scalar(statement)
    if optimization is None:
        raise NotFoundError("No such optimization.", details={"optimization_id": str(optimization_id)})
    return optimization


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
