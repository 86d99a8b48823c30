"""The workflow run's status machine: one transition table and one guard, as for recommendations.

    pending ──► running ──► completed | failed | timeout
       │           │ ▲
       │           ▼ │
       │        waiting (time or evidence; no worker holds it)
       │           │
       │        paused (a human decides: resume ► running, abort ► cancelling)
       ▼
    cancelled ◄── cancelling ◄── (cancel from running, waiting or paused)

A cancel is never overwritten by completion: `running → completed` is refused once the run is `cancelling`, and
the runner, at its next safe point, undoes what the run did (the workflow's `on_cancel`) and ends `cancelled`.
`running → running` is the take-over of a run whose worker died (its job is retried by another worker).
"""

from __future__ import annotations

from optiinfra.enums import WorkflowStatus
from optiinfra.recommendations.states import check_transition

S = WorkflowStatus

TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.RUNNING, S.WAITING, S.PAUSED, S.CANCELLING, S.COMPLETED, S.FAILED, S.TIMEOUT}),
    S.WAITING: frozenset({S.RUNNING, S.CANCELLING, S.FAILED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMEOUT: frozenset(),
}

TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
# Statuses in which a worker has something to do when it gets the run's job.
ACTIVE = frozenset({S.PENDING, S.RUNNING, S.WAITING, S.CANCELLING})
# Statuses a cancel request applies to.
CANCELLABLE = frozenset({S.PENDING, S.RUNNING, S.WAITING, S.PAUSED})


def can_transition(current: WorkflowStatus, target: WorkflowStatus) -> bool:
    return target in TRANSITIONS[current]


def require_transition(current: WorkflowStatus, target: WorkflowStatus) -> None:
    """The one guard every status change of a run goes through (409 `invalid_transition` otherwise)."""
    check_transition("workflow run", current, target, TRANSITIONS)
