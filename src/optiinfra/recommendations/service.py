"""The recommendation → approval → optimization lifecycle. Every change is guarded by the transition tables
and recorded in the event log in the same transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal, Role
from optiinfra.customers import repository as customer_repository
from optiinfra.errors import ConflictError, InvalidInputError
from optiinfra.events import service as events
from optiinfra.models import (
    Approval,
    ApprovalStatus,
    EventSeverity,
    Optimization,
    OptimizationStatus,
    Recommendation,
    RecommendationPriority,
    RecommendationStatus,
)
from optiinfra.pagination import Page
from optiinfra.recommendations import gate as quality_gate
from optiinfra.recommendations import repository
from optiinfra.recommendations import schemas as rec_schemas
from optiinfra.recommendations.states import (
    OPTIMIZATION_TRANSITIONS,
    RECOMMENDATION_TRANSITIONS,
    check_transition,
)


def _now() -> datetime:
    return datetime.now(UTC)


def set_recommendation_status(
    session: Session, recommendation: Recommendation, target: RecommendationStatus, actor: Principal, **extra: Any
) -> None:
    """The one way a recommendation changes status: guarded, and written to the event log."""
    check_transition("recommendation", recommendation.status, target, RECOMMENDATION_TRANSITIONS)
    before = recommendation.status
    recommendation.status = target
    events.record(
        session,
        event_type=f"recommendation.{target}",
        actor=actor,
        customer_id=recommendation.customer_id,
        agent_id=recommendation.agent_id,
        subject={"recommendation_id": str(recommendation.id)},
        before={"status": str(before)},
        after={"status": str(target)},
        extra=extra or None,
    )


def set_optimization_status(
    session: Session,
    optimization: Optimization,
    target: OptimizationStatus,
    actor: Principal,
    severity: EventSeverity = EventSeverity.INFO,
    *,
    progress: int | None = None,
    **extra: Any,
) -> None:
    """The one way an optimization changes status (and, with it, progress): guarded, and logged."""
    check_transition("optimization", optimization.status, target, OPTIMIZATION_TRANSITIONS)
    before = optimization.status
    before_progress = optimization.progress
    optimization.status = target
    if progress is not None:
        optimization.progress = progress
    events.record(
        session,
        event_type=f"optimization.{target}",
        actor=actor,
        customer_id=optimization.customer_id,
        agent_id=optimization.agent_id,
        severity=severity,
        subject={"optimization_id": str(optimization.id), "recommendation_id": str(optimization.recommendation_id)},
        before={"status": str(before), "progress": before_progress},
        after={"status": str(target), "progress": optimization.progress},
        extra=extra or None,
    )


# --- recommendations ---------------------------------------------------------------------------------------


def create_recommendation(
    session: Session, principal: Principal, payload: rec_schemas.RecommendationCreate
) -> rec_schemas.Recommendation:
    """An agent proposes a change to a customer assigned to it."""
    principal.require(Role.AGENT)
    assert principal.agent_id is not None
    customer_repository.customer_to_act_for(session, principal, payload.customer_id)
    recommendation = Recommendation(
        customer_id=payload.customer_id,
        agent_id=principal.agent_id,
        type=payload.type,
        title=payload.title,
        description=payload.description,
        estimated_savings=payload.estimated_savings,
        estimated_improvement=payload.estimated_improvement,
        confidence_score=payload.confidence_score,
        priority=payload.priority,
        status=RecommendationStatus.PENDING,
        data=payload.data,
    )
    session.add(recommendation)
    session.flush()
    events.record(
        session,
        event_type="recommendation.created",
        actor=principal,
        customer_id=recommendation.customer_id,
        agent_id=recommendation.agent_id,
        severity=EventSeverity.WARNING if payload.priority is RecommendationPriority.CRITICAL else EventSeverity.INFO,
        subject={"recommendation_id": str(recommendation.id), "type": recommendation.type},
        after={"status": str(recommendation.status), "estimated_savings": str(payload.estimated_savings)},
    )
    return rec_schemas.Recommendation.model_validate(recommendation)


def decide(
    session: Session, principal: Principal, recommendation_id: uuid.UUID, payload: rec_schemas.Decision
) -> rec_schemas.DecisionResult:
    """The customer approves or rejects a pending recommendation; approval queues its optimization.

    The recommendation row is locked first, so of two concurrent decisions exactly one finds it pending; the
    other waits, then finds it decided and gets 409.
    """
    principal.require(Role.CUSTOMER)
    principal.require_writable()
    recommendation = repository.get_recommendation(session, principal, recommendation_id, for_update=True)
    approve = payload.decision == "approve"
    target = RecommendationStatus.APPROVED if approve else RecommendationStatus.REJECTED
    set_recommendation_status(session, recommendation, target, principal, comment=payload.comment)
    approval = Approval(
        recommendation_id=recommendation.id,
        approved_by=principal.name,
        status=ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
        comment=payload.comment,
    )
    session.add(approval)
    if approve:
        recommendation.approved_at = _now()
    optimization = None
    if approve:
        optimization = Optimization(
            recommendation_id=recommendation.id,
            customer_id=recommendation.customer_id,
            agent_id=recommendation.agent_id,
            status=OptimizationStatus.QUEUED,
            progress=0,
        )
        session.add(optimization)
        session.flush()
        events.record(
            session,
            event_type="optimization.queued",
            actor=principal,
            customer_id=optimization.customer_id,
            agent_id=optimization.agent_id,
            subject={"optimization_id": str(optimization.id), "recommendation_id": str(recommendation.id)},
            after={"status": str(optimization.status), "progress": 0},
        )
    session.flush()
    return rec_schemas.DecisionResult(
        recommendation=rec_schemas.Recommendation.model_validate(recommendation),
        approval=rec_schemas.Approval.model_validate(approval),
        optimization=rec_schemas.Optimization.model_validate(optimization) if optimization else None,
    )


def get_recommendation(
    session: Session, principal: Principal, recommendation_id: uuid.UUID
) -> rec_schemas.RecommendationDetail:
    recommendation = repository.get_recommendation(session, principal, recommendation_id, with_children=True)
    return rec_schemas.RecommendationDetail.model_validate(recommendation)


def list_recommendations(
    session: Session, principal: Principal, filters: rec_schemas.RecommendationFilters
) -> Page[rec_schemas.Recommendation]:
    return repository.list_recommendations(session, principal, filters).map(rec_schemas.Recommendation.model_validate)


def summary(session: Session, principal: Principal, customer_id: uuid.UUID | None) -> rec_schemas.Summary:
    """Counts by status and savings: pending estimates and realised actuals."""
    target = customer_id or principal.customer_id
    if target is None:
        raise InvalidInputError("Name the customer: ?customer_id=<id>.")
    customer = customer_repository.get_customer(session, principal, target)
    return rec_schemas.Summary(
        customer_id=customer.id,
        recommendations_by_status={
            status: repository.recommendation_counts(session, customer.id).get(status, 0)
            for status in RecommendationStatus
        },
        optimizations_by_status={
            status: repository.optimization_counts(session, customer.id).get(status, 0) for status in OptimizationStatus
        },
        estimated_savings_pending=repository.pending_estimated_savings(session, customer.id),
        actual_savings_realised=repository.realised_savings(session, customer.id),
    )


# --- optimizations -----------------------------------------------------------------------------------------


def _lock(session: Session, principal: Principal, optimization_id: uuid.UUID) -> tuple[Recommendation, Optimization]:
    """Lock the recommendation, then the optimization (always in that order, so no deadlock)."""
    optimization = repository.get_optimization(session, principal, optimization_id)
    recommendation = repository.lock_recommendation_of(session, optimization)
    optimization = repository.get_optimization(session, principal, optimization_id, for_update=True)
    return recommendation, optimization


def _require_executor(principal: Principal) -> None:
    """Optimizations are executed by their agent (or the operator on its behalf)."""
    principal.require(Role.AGENT, Role.OPERATOR)


def start_optimization(session: Session, principal: Principal, optimization_id: uuid.UUID) -> rec_schemas.Optimization:
    _require_executor(principal)
    recommendation, optimization = _lock(session, principal, optimization_id)
    check_transition("optimization", optimization.status, OptimizationStatus.EXECUTING, OPTIMIZATION_TRANSITIONS)
    now = _now()
    optimization.started_at = now
    recommendation.executed_at = now
    set_recommendation_status(session, recommendation, RecommendationStatus.EXECUTING, principal)
    set_optimization_status(session, optimization, OptimizationStatus.EXECUTING, principal)
    session.flush()
    return rec_schemas.Optimization.model_validate(optimization)


def report_progress(
    session: Session, principal: Principal, optimization_id: uuid.UUID, payload: rec_schemas.Progress
) -> rec_schemas.Optimization:
    _require_executor(principal)
    _, optimization = _lock(session, principal, optimization_id)
    if optimization.status is not OptimizationStatus.EXECUTING:
        raise ConflictError(
            f"Progress is reported while executing; the optimization is {optimization.status}.",
            details={"current_status": str(optimization.status)},
        )
    if payload.progress < optimization.progress:
        raise ConflictError(
            f"Progress never goes backwards: it is {optimization.progress}, not {payload.progress}.",
            details={"current_progress": optimization.progress, "requested_progress": payload.progress},
        )
    before = optimization.progress
    optimization.progress = payload.progress
    if payload.result is not None:
        optimization.result = {**(optimization.result or {}), **payload.result}
    if before != payload.progress:
        events.record(
            session,
            event_type="optimization.progress",
            actor=principal,
            customer_id=optimization.customer_id,
            agent_id=optimization.agent_id,
            subject={"optimization_id": str(optimization.id)},
            before={"progress": before},
            after={"progress": optimization.progress},
        )
    session.flush()
    return rec_schemas.Optimization.model_validate(optimization)


def complete_optimization(
    session: Session, principal: Principal, optimization_id: uuid.UUID, payload: rec_schemas.Completion
) -> rec_schemas.Optimization:
    _require_executor(principal)
    recommendation, optimization = _lock(session, principal, optimization_id)
    check_transition("optimization", optimization.status, OptimizationStatus.COMPLETED, OPTIMIZATION_TRANSITIONS)
    quality_gate.check_completion(session, optimization)
    optimization.completed_at = _now()
    optimization.actual_savings = payload.actual_savings
    optimization.actual_improvement = payload.actual_improvement
    optimization.result = {**(optimization.result or {}), **payload.result}
    set_recommendation_status(session, recommendation, RecommendationStatus.COMPLETED, principal)
    set_optimization_status(
        session,
        optimization,
        OptimizationStatus.COMPLETED,
        principal,
        progress=100,
        actual_savings=str(payload.actual_savings) if payload.actual_savings is not None else None,
    )
    session.flush()
    return rec_schemas.Optimization.model_validate(optimization)


def fail_optimization(
    session: Session, principal: Principal, optimization_id: uuid.UUID, payload: rec_schemas.Failure
) -> rec_schemas.Optimization:
    _require_executor(principal)
    recommendation, optimization = _lock(session, principal, optimization_id)
    check_transition("optimization", optimization.status, OptimizationStatus.FAILED, OPTIMIZATION_TRANSITIONS)
    optimization.error = payload.error
    optimization.completed_at = _now()
    if payload.result is not None:
        optimization.result = {**(optimization.result or {}), **payload.result}
    set_recommendation_status(session, recommendation, RecommendationStatus.FAILED, principal)
    set_optimization_status(
        session, optimization, OptimizationStatus.FAILED, principal, EventSeverity.ERROR, error=payload.error
    )
    session.flush()
    return rec_schemas.Optimization.model_validate(optimization)


def rollback_optimization(
    session: Session, principal: Principal, optimization_id: uuid.UUID, payload: rec_schemas.Rollback
) -> rec_schemas.Optimization:
    """Roll back an executing or completed optimization: the customer, its agent, or OptiInfra itself."""
    principal.require(Role.CUSTOMER, Role.OPERATOR, Role.AGENT)
    principal.require_writable()
    recommendation, optimization = _lock(session, principal, optimization_id)
    check_transition("optimization", optimization.status, OptimizationStatus.ROLLED_BACK, OPTIMIZATION_TRANSITIONS)
    optimization.rolled_back_at = _now()
    set_recommendation_status(
        session, recommendation, RecommendationStatus.ROLLED_BACK, principal, reason=payload.reason
    )
    set_optimization_status(
        session, optimization, OptimizationStatus.ROLLED_BACK, principal, EventSeverity.WARNING, reason=payload.reason
    )
    session.flush()
    return rec_schemas.Optimization.model_validate(optimization)


def rollback_for_quality(session: Session, actor: Principal, optimization_id: uuid.UUID, reason: str) -> None:
    """Quality detection's rollback (`optiinfra.quality.detection.Rollback`): the lifecycle's own rollback."""
    rollback_optimization(session, actor, optimization_id, rec_schemas.Rollback(reason=reason))


def get_optimization(session: Session, principal: Principal, optimization_id: uuid.UUID) -> rec_schemas.Optimization:
    return rec_schemas.Optimization.model_validate(repository.get_optimization(session, principal, optimization_id))


def list_optimizations(
    session: Session, principal: Principal, filters: rec_schemas.OptimizationFilters
) -> Page[rec_schemas.Optimization]:
    return repository.list_optimizations(session, principal, filters).map(rec_schemas.Optimization.model_validate)
