"""/api/v1/recommendations and /api/v1/optimizations"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from optiinfra.api.deps import PrincipalDep, SessionDep
from optiinfra.api.pagination import Page
from optiinfra.api.strict import StrictRoute
from optiinfra.recommendations import schemas, service

router = APIRouter(tags=["recommendations"], route_class=StrictRoute)


@router.post("/recommendations", status_code=201, response_model=schemas.Recommendation)
def create_recommendation(
    payload: schemas.RecommendationCreate, session: SessionDep, principal: PrincipalDep
) -> schemas.Recommendation:
    """An agent proposes a change to a customer."""
    return service.create_recommendation(session, principal, payload)


@router.get("/recommendations", response_model=Page[schemas.Recommendation])
def list_recommendations(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.RecommendationFilters, Query()]
) -> Page[schemas.Recommendation]:
    return service.list_recommendations(session, principal, filters)


@router.get("/recommendations/summary", response_model=schemas.Summary)
def summary(session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None) -> schemas.Summary:
    """Counts by status, estimated savings pending and actual savings realised (the caller's, or one customer's)."""
    return service.summary(session, principal, customer_id)


@router.get("/recommendations/{recommendation_id}", response_model=schemas.RecommendationDetail)
def get_recommendation(
    recommendation_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> schemas.RecommendationDetail:
    return service.get_recommendation(session, principal, recommendation_id)


@router.post("/recommendations/{recommendation_id}/decision", response_model=schemas.DecisionResult)
def decide(
    recommendation_id: uuid.UUID, payload: schemas.Decision, session: SessionDep, principal: PrincipalDep
) -> schemas.DecisionResult:
    """The customer approves or rejects; approval queues the optimization."""
    return service.decide(session, principal, recommendation_id, payload)


@router.get("/optimizations", response_model=Page[schemas.Optimization])
def list_optimizations(
    session: SessionDep, principal: PrincipalDep, filters: Annotated[schemas.OptimizationFilters, Query()]
) -> Page[schemas.Optimization]:
    return service.list_optimizations(session, principal, filters)


@router.get("/optimizations/{optimization_id}", response_model=schemas.Optimization)
def get_optimization(optimization_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> schemas.Optimization:
    return service.get_optimization(session, principal, optimization_id)


@router.post("/optimizations/{optimization_id}/start", response_model=schemas.Optimization)
def start_optimization(
    optimization_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> schemas.Optimization:
    """queued → executing (the optimization's agent)."""
    return service.start_optimization(session, principal, optimization_id)


@router.post("/optimizations/{optimization_id}/progress", response_model=schemas.Optimization)
def report_progress(
    optimization_id: uuid.UUID, payload: schemas.Progress, session: SessionDep, principal: PrincipalDep
) -> schemas.Optimization:
    """Progress 0 to 100, never backwards (the optimization's agent)."""
    return service.report_progress(session, principal, optimization_id, payload)


@router.post("/optimizations/{optimization_id}/complete", response_model=schemas.Optimization)
def complete_optimization(
    optimization_id: uuid.UUID, payload: schemas.Completion, session: SessionDep, principal: PrincipalDep
) -> schemas.Optimization:
    """executing → completed, with actual savings, improvement and result (the optimization's agent)."""
    return service.complete_optimization(session, principal, optimization_id, payload)


@router.post("/optimizations/{optimization_id}/fail", response_model=schemas.Optimization)
def fail_optimization(
    optimization_id: uuid.UUID, payload: schemas.Failure, session: SessionDep, principal: PrincipalDep
) -> schemas.Optimization:
    """executing → failed, with the error (the optimization's agent)."""
    return service.fail_optimization(session, principal, optimization_id, payload)


@router.post("/optimizations/{optimization_id}/rollback", response_model=schemas.Optimization)
def rollback_optimization(
    optimization_id: uuid.UUID, payload: schemas.Rollback, session: SessionDep, principal: PrincipalDep
) -> schemas.Optimization:
    """executing or completed → rolled_back (the customer, its agent, or the operator)."""
    return service.rollback_optimization(session, principal, optimization_id, payload)
