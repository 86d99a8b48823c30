"""The lifecycle as data: allowed transitions of recommendations and optimizations, and the one guard.

recommendation: pending ─approve→ approved ─start→ executing ─complete→ completed ─rollback→ rolled_back
                       └reject→ rejected                    ├fail→ failed
                                                            └rollback→ rolled_back
optimization:   queued ─start→ executing ─complete→ completed ─rollback→ rolled_back
                                         ├fail→ failed
                                         └rollback→ rolled_back
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from optiinfra.enums import OptimizationStatus, RecommendationStatus
from optiinfra.errors import InvalidTransitionError

R = RecommendationStatus
O = OptimizationStatus  # noqa: E741

RECOMMENDATION_TRANSITIONS: Mapping[RecommendationStatus, frozenset[RecommendationStatus]] = {
    R.PENDING: frozenset({R.APPROVED, R.REJECTED}),
    R.APPROVED: frozenset({R.EXECUTING}),
    R.EXECUTING: frozenset({R.COMPLETED, R.FAILED, R.ROLLED_BACK}),
    R.COMPLETED: frozenset({R.ROLLED_BACK}),
    R.REJECTED: frozenset(),
    R.FAILED: frozenset(),
    R.ROLLED_BACK: frozenset(),
}

OPTIMIZATION_TRANSITIONS: Mapping[OptimizationStatus, frozenset[OptimizationStatus]] = {
    O.QUEUED: frozenset({O.EXECUTING}),
    O.EXECUTING: frozenset({O.COMPLETED, O.FAILED, O.ROLLED_BACK}),
    O.COMPLETED: frozenset({O.ROLLED_BACK}),
    O.FAILED: frozenset(),
    O.ROLLED_BACK: frozenset(),
}

S = TypeVar("S", bound=StrEnum)


def check_transition(kind: str, current: S, target: S, transitions: Mapping[S, frozenset[S]]) -> None:
    """Refuse a transition the table does not allow, with the current state and what is allowed from it."""
    if target not in transitions[current]:
        allowed = sorted(str(state) for state in transitions[current])
        raise InvalidTransitionError(
            f"The {kind} is {current}; it cannot become {target}.",
            details={"current_status": str(current), "requested_status": str(target), "allowed": allowed},
        )
