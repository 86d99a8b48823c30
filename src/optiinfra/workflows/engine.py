"""The workflow runner: durable runs whose record is the workflow tables, driven by jobs of the queue.

A workflow is a named, ordered list of steps. `create` records a pending run with one `workflow_steps` row per step
and enqueues its first job in the same transaction; it returns at once. A worker's job calls `advance`, which runs
the steps in order, each step's record in its own short transaction (no transaction is open while a step calls
anything outside PostgreSQL), with retries (exponential backoff), timeouts, errors with details and artifacts.

A step is a plain function of a `StepContext`. It returns:
- a dict: the step completed; the dict is its output and the next steps' input;
- `Wait(until, waiting_for, state)`: the step needs time or evidence. The run becomes `waiting`, the step keeps
  `state`, and a job is deferred at `until`; the job ends. When it comes back the step runs again with its state;
- `Pause(reason, details, state)`: the step needs a human. The run becomes `paused`; `resume` runs the step again
  with `context.decision` set, `abort` cancels the run.

Status changes go through one guard (`states.TRANSITIONS`). A cancel (`cancelling`) is honoured at the next safe
point (between steps, or when a waiting or paused run is next looked at): the workflow's `on_cancel` undoes what the
run did, and the run ends `cancelled`; a completion never overwrites a cancel.

Exactly one worker advances a run at a time: the queue's per-run lock, and a runner token stamped on the run (a
step's result is recorded only while the token is still the recorder's). A worker that dies mid-step: its job goes
back to the queue when its heartbeat stops, and the next worker re-runs the interrupted step (counted as a retry;
steps are idempotent and their side effects carry idempotency keys). Deadlocks and serialization failures are
retried.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from psycopg import errors as pg_errors
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import ConflictError, InvalidTransitionError, NotFoundError
from optiinfra.events import service as events
from optiinfra.files import private_directory, write_private
from optiinfra.models import (
    AgentState,
    AgentStatusDetail,
    ArtifactType,
    EventSeverity,
    StepStatus,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
    WorkflowType,
)
from optiinfra.workflows import queue
from optiinfra.workflows.states import CANCELLABLE, TERMINAL, require_transition

logger = logging.getLogger("optiinfra.workflows")

T = TypeVar("T")
S = WorkflowStatus


class StepFailedError(Exception):
    """A step's own, expected failure: not retried (unlike other exceptions), recorded with its details."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class WorkflowCancelledError(Exception):
    """The execution was cancelled while running."""


@dataclass(frozen=True)
class Wait:
    """A step's answer: look again at `until` (or earlier, if something wakes the run); keep `state`."""

    until: datetime
    waiting_for: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pause:
    """A step's answer: a human must decide (resume or abort); keep `state`."""

    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


StepResult = dict[str, Any] | Wait | Pause


@dataclass(frozen=True)
class StepDefinition:
    name: str
    run: Callable[[StepContext], StepResult]
    max_retries: int = 3
    timeout_seconds: float = 60.0
    backoff_seconds: float = 0.5


@dataclass(frozen=True)
class FinishedRun:
    """What an `on_finish` hook learns about the run that ended."""

    execution_id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    input: Mapping[str, Any]
    status: WorkflowStatus
    factory: sessionmaker[Session]


@dataclass(frozen=True)
class CancelledRun:
    """What an `on_cancel` hook learns: what the run did so far, to undo it."""

    execution_id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    input: Mapping[str, Any]
    outputs: Mapping[str, dict[str, Any]]
    states: Mapping[str, dict[str, Any]]  # the state of steps that waited or paused
    reason: dict[str, Any]
    factory: sessionmaker[Session]


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    workflow_type: WorkflowType
    steps: tuple[StepDefinition, ...]
    resumable: bool = True
    # Runs after the run ends, whatever the outcome (releasing what its steps took, such as locks).
    on_finish: Callable[[FinishedRun], None] | None = None
    # Undoes what the run did when it is cancelled or aborted; returns what it did (recorded).
    on_cancel: Callable[[CancelledRun], dict[str, Any]] | None = None


@dataclass
class StepContext:
    """What a step sees: the run's input, earlier steps' outputs, its own saved state, a session factory."""

    execution_id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    input: Mapping[str, Any]
    outputs: dict[str, dict[str, Any]]
    attempt: int
    factory: sessionmaker[Session]
    artifact_root: Path
    step_id: uuid.UUID
    state: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None  # a human's decision on a paused step (resume)
    _artifacts: list[dict[str, Any]] = field(default_factory=list)

    def write_artifact(self, name: str, artifact_type: ArtifactType, content: bytes | str, content_type: str) -> Path:
        """Write a file under the data directory and record it as an artifact of this step."""
        safe = Path(name).name  # never a path outside the execution's folder
        private_directory(self.artifact_root)
        path = self.artifact_root / str(self.execution_id) / safe
        data = content.encode() if isinstance(content, str) else content
        write_private(path, data)
        self._artifacts.append(
            {
                "artifact_name": safe,
                "artifact_type": artifact_type,
                "artifact_path": str(path),
                "artifact_size_bytes": len(data),
                "content_type": content_type,
            }
        )
        return path


def _now() -> datetime:
    return datetime.now(UTC)


RETRYABLE_SQLSTATES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)


def in_transaction(factory: sessionmaker[Session], work: Callable[[Session], T], attempts: int = 6) -> T:
    """Run `work` in one transaction, retried on a deadlock or serialization failure (never left half-done)."""
    for attempt in range(attempts):
        try:
            with unit_of_work(factory) as session:
                return work(session)
        except DBAPIError as error:
            if not isinstance(error.orig, RETRYABLE_SQLSTATES) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


class _SupersededError(Exception):
    """Another worker took the run over; this one stops without recording anything more."""


def _locked_run(session: Session, execution_id: uuid.UUID, token: str | None) -> WorkflowExecution:
    """The run, locked for this transaction, if this worker (its runner token) still holds it."""
    execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
    assert execution is not None
    if token is not None and execution.metadata_.get("runner") != token:
        raise _SupersededError
    return execution


class WorkflowRunner:
    """Creates executions of registered workflow definitions and advances them."""

    def __init__(self, factory: sessionmaker[Session], artifact_root: Path) -> None:
        self.factory = factory
        self.artifact_root = artifact_root
        self.definitions: dict[str, WorkflowDefinition] = {}

    def register(self, definition: WorkflowDefinition) -> None:
        self.definitions[definition.name] = definition

    # --- creating ------------------------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        customer_id: uuid.UUID,
        agent_id: uuid.UUID,
        input_data: dict[str, Any],
        actor: Principal,
        session: Session | None = None,
    ) -> uuid.UUID:
        """Record a pending execution with all its steps and enqueue its job; returns its id.

        With `session`, everything is written in the caller's transaction (committed with it)."""
        definition = self.definitions[name]

        def write(session: Session) -> uuid.UUID:
            execution = WorkflowExecution(
                agent_id=agent_id,
                customer_id=customer_id,
                workflow_type=definition.workflow_type,
                status=S.PENDING,
                input_data=input_data,
                metadata_={"workflow": name},
            )
            session.add(execution)
            session.flush()
            for order, step in enumerate(definition.steps, start=1):
                session.add(
                    WorkflowStep(
                        workflow_execution_id=execution.id,
                        step_name=step.name,
                        step_order=order,
                        max_retries=step.max_retries,
                        metadata_={"timeout_seconds": step.timeout_seconds},
                    )
                )
            events.record(
                session,
                event_type="workflow.created",
                actor=actor,
                customer_id=customer_id,
                agent_id=agent_id,
                subject={"workflow_execution_id": str(execution.id), "workflow": name},
                after={"status": "pending"},
            )
            session.flush()
            queue.enqueue(session, execution.id)
            return execution.id

        return self._in(session, write)

    def _in(self, session: Session | None, work: Callable[[Session], T]) -> T:
        """`work` in the caller's transaction when given one (committed with it), else in a retried one of its own."""
        return work(session) if session is not None else in_transaction(self.factory, work)

    # --- transitions ---------------------------------------------------------------------------------------------

    def _transition(
        self,
        session: Session,
        execution: WorkflowExecution,
        target: WorkflowStatus,
        actor: Principal,
        *,
        event_type: str | None = "",
        severity: EventSeverity = EventSeverity.INFO,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """The guarded status change, with its event (none when `event_type` is None)."""
        before = execution.status
        require_transition(before, target)
        execution.status = target
        if event_type is None:
            return
        name = execution.metadata_.get("workflow")
        events.record(
            session,
            event_type=event_type or f"workflow.{target}",
            actor=actor,
            customer_id=execution.customer_id,
            agent_id=execution.agent_id,
            severity=severity,
            subject={"workflow_execution_id": str(execution.id), "workflow": name},
            before={"status": str(before)},
            after={"status": str(target)},
            extra=extra,
        )

    # --- advancing -----------------------------------------------------------------------------------------------

    def run(self, execution_id: uuid.UUID, actor: Principal | None = None) -> WorkflowStatus:
        """Advance a run in this thread as far as it goes (what a worker's job does); returns its status."""
        return self.advance(execution_id, actor)

    def advance(self, execution_id: uuid.UUID, actor: Principal | None = None) -> WorkflowStatus:
        actor = actor or queue.SYSTEM
        token = uuid.uuid4().hex
        claim = in_transaction(self.factory, lambda s: self._claim(s, execution_id, token, actor))
        if isinstance(claim, WorkflowStatus):
            return claim
        definition, customer_id, agent_id, input_data = claim
        outputs: dict[str, dict[str, Any]] = {}
        try:
            for order, step in enumerate(definition.steps, start=1):
                step_row = self._step_row(execution_id, order)
                if step_row.status is StepStatus.COMPLETED:
                    outputs[step.name] = dict(step_row.output_data)
                    continue
                if step_row.status is StepStatus.SKIPPED:
                    continue
                if self._status(execution_id) is S.CANCELLING:  # a safe point: between steps
                    return self._cancel_now(execution_id, definition, outputs, actor)
                outcome = self._run_step(
                    definition, step, step_row, execution_id, customer_id, agent_id, input_data, outputs, token
                )
                if isinstance(outcome, Wait):
                    return self._wait(execution_id, step_row, outcome, token, actor)
                if isinstance(outcome, Pause):
                    return self._pause(execution_id, step_row, outcome, token, actor)
                status, output, error = outcome
                if status is StepStatus.COMPLETED:
                    outputs[step.name] = output
                    continue
                if status is StepStatus.SKIPPED:  # the workflow decided to stop here, successfully
                    break
                final = self._status_after_failure(error)
                if final is S.CANCELLED:
                    return self._cancel_now(execution_id, definition, outputs, actor)
                return self._finish(execution_id, definition, final, outputs, error, actor, token)
            return self._finish(execution_id, definition, S.COMPLETED, outputs, None, actor, token)
        except _SupersededError:
            logger.warning("run %s was taken over by another worker", execution_id)
            return self._status(execution_id)

    def _claim(
        self, session: Session, execution_id: uuid.UUID, token: str, actor: Principal
    ) -> WorkflowStatus | tuple[WorkflowDefinition, uuid.UUID, uuid.UUID, dict[str, Any]]:
        """Take the run for this job, or say why there is nothing to do (its status)."""
        execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
        if execution is None:
            return S.FAILED
        status = execution.status
        if status in TERMINAL or status is S.PAUSED:
            return status
        definition = self.definitions.get(execution.metadata_.get("workflow", ""))
        if status is S.CANCELLING:
            execution.metadata_ = {**execution.metadata_, "runner": token}
            return (definition or _unknown(execution), execution.customer_id, execution.agent_id, {})
        if status is S.WAITING:
            until = execution.metadata_.get("waiting", {}).get("until")
            if until and datetime.fromisoformat(until) > _now() + timedelta(seconds=1):
                # Woken early (a job deferred by recovery): look again at the time the step asked for.
                queue.enqueue(session, execution_id, at=datetime.fromisoformat(until))
                return status
        recorded = list(
            session.scalars(
                select(WorkflowStep.step_name)
                .where(WorkflowStep.workflow_execution_id == execution_id)
                .order_by(WorkflowStep.step_order)
            )
        )
        if definition is None or recorded != [step.name for step in definition.steps]:
            # Recorded by another version of the workflow: fail cleanly rather than run steps against rows that
            # mean something else.
            self._transition(session, execution, S.FAILED, actor, severity=EventSeverity.WARNING)
            execution.completed_at = _now()
            execution.error_details = {
                "type": "definition_changed",
                "message": "the recorded steps are not those of any workflow this server knows",
            }
            return S.FAILED
        if status is S.RUNNING and "runner" not in execution.metadata_:
            event_type = None  # resumed by a human (recorded then), now picked up by a worker
        else:
            event_type = {S.PENDING: "workflow.started", S.RUNNING: "workflow.taken_over"}.get(
                status, "workflow.resumed"
            )
        self._transition(session, execution, S.RUNNING, actor, event_type=event_type)
        execution.started_at = execution.started_at or _now()
        metadata = {k: v for k, v in execution.metadata_.items() if k not in {"waiting", "paused"}}
        execution.metadata_ = {**metadata, "runner": token, "heartbeat_at": _now().isoformat()}
        self._set_agent_busy(session, execution.agent_id, execution_id, busy=True)
        return definition, execution.customer_id, execution.agent_id, dict(execution.input_data)

    @staticmethod
    def _status_after_failure(error: dict[str, Any] | None) -> WorkflowStatus:
        if error and error.get("type") == "cancelled":
            return S.CANCELLED
        if error and error.get("type") == "timeout":
            return S.TIMEOUT
        return S.FAILED

    def _status(self, execution_id: uuid.UUID) -> WorkflowStatus:
        with unit_of_work(self.factory) as session:
            status = session.scalar(select(WorkflowExecution.status).where(WorkflowExecution.id == execution_id))
            if status is None:
                raise NotFoundError("No such workflow run.")
            return status

    def _step_row(self, execution_id: uuid.UUID, order: int) -> WorkflowStep:
        with unit_of_work(self.factory) as session:
            row = session.scalar(
                select(WorkflowStep).where(
                    WorkflowStep.workflow_execution_id == execution_id, WorkflowStep.step_order == order
                )
            )
            assert row is not None
            return row

    def _run_step(
        self,
        definition: WorkflowDefinition,
        step: StepDefinition,
        step_row: WorkflowStep,
        execution_id: uuid.UUID,
        customer_id: uuid.UUID,
        agent_id: uuid.UUID,
        input_data: dict[str, Any],
        outputs: dict[str, dict[str, Any]],
        token: str,
    ) -> tuple[StepStatus, dict[str, Any], dict[str, Any] | None] | Wait | Pause:
        attempt = step_row.retry_count
        if step_row.status in {StepStatus.RUNNING, StepStatus.RETRYING}:
            # The worker running this step stopped (its job came back to the queue): run it again, as a retry.
            crashed = {"type": "crashed", "step": step.name, "message": "the worker running this step stopped"}
            if not definition.resumable or attempt >= step.max_retries:
                self._update_step(step_row.id, StepStatus.FAILED, token, error=crashed, ended=True)
                return StepStatus.FAILED, {}, crashed
            attempt += 1
            self._update_step(step_row.id, StepStatus.RETRYING, token, error=crashed, retry_count=attempt)
            step_row.retry_count = attempt - 1  # so the first pass below shows `retrying`
        state = dict(step_row.metadata_.get("state", {}))
        decision = step_row.metadata_.get("decision")
        error: dict[str, Any]
        while True:
            self._update_step(
                step_row.id,
                StepStatus.RUNNING if attempt == step_row.retry_count else StepStatus.RETRYING,
                token,
                started=True,
                input_data={"input": input_data, "from_steps": sorted(outputs)},
            )
            context = StepContext(
                execution_id=execution_id,
                customer_id=customer_id,
                agent_id=agent_id,
                input=input_data,
                outputs=outputs,
                attempt=attempt,
                factory=self.factory,
                artifact_root=self.artifact_root,
                step_id=step_row.id,
                state=dict(state),
                decision=decision,
            )
            try:
                result = _call_with_timeout(step.run, context, step.timeout_seconds)
            except FutureTimeout:
                error = {"type": "timeout", "step": step.name, "message": f"no result in {step.timeout_seconds} s"}
                self._update_step(
                    step_row.id, StepStatus.FAILED, token, error=error, ended=True, artifacts=context._artifacts
                )
                return StepStatus.FAILED, {}, error
            except StepFailedError as failure:
                error = {"type": "failed", "step": step.name, "message": str(failure), "details": failure.details}
                self._update_step(
                    step_row.id, StepStatus.FAILED, token, error=error, ended=True, artifacts=context._artifacts
                )
                return StepStatus.FAILED, {}, error
            except WorkflowCancelledError:
                error = {"type": "cancelled", "step": step.name, "message": "cancelled"}
                self._update_step(step_row.id, StepStatus.SKIPPED, token, error=error, ended=True)
                return StepStatus.FAILED, {}, error
            except (_SupersededError, InvalidTransitionError):
                raise
            except Exception as failure:  # a step's unexpected error is retried, then recorded
                error = {"type": type(failure).__name__, "step": step.name, "message": str(failure)[:2000]}
                if attempt >= step.max_retries:
                    self._update_step(
                        step_row.id, StepStatus.FAILED, token, error=error, ended=True, artifacts=context._artifacts
                    )
                    return StepStatus.FAILED, {}, {**error, "attempts": attempt + 1}
                attempt += 1
                self._update_step(step_row.id, StepStatus.RETRYING, token, error=error, retry_count=attempt)
                time.sleep(step.backoff_seconds * 2 ** (attempt - 1))
                continue
            if isinstance(result, Wait | Pause):
                self._update_step(
                    step_row.id,
                    StepStatus.WAITING if isinstance(result, Wait) else StepStatus.PAUSED,
                    token,
                    artifacts=context._artifacts,
                    state=result.state,
                )
                return result
            stop = bool(result.pop("_stop_workflow", False))
            self._update_step(
                step_row.id, StepStatus.COMPLETED, token, output=result, ended=True, artifacts=context._artifacts
            )
            return (StepStatus.SKIPPED if stop else StepStatus.COMPLETED), result, None

    def _update_step(
        self,
        step_id: uuid.UUID,
        status: StepStatus,
        token: str,
        *,
        started: bool = False,
        ended: bool = False,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        retry_count: int | None = None,
        input_data: dict[str, Any] | None = None,
        artifacts: list[dict[str, Any]] | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        def write(session: Session) -> None:
            step = session.get(WorkflowStep, step_id, with_for_update=True)
            assert step is not None
            execution = _locked_run(session, step.workflow_execution_id, token)
            step.status = status
            if started and step.started_at is None:
                step.started_at = _now()
            if ended:
                step.completed_at = _now()
            if output is not None:
                step.output_data = output
            if error is not None:
                step.error_details = error
            if retry_count is not None:
                step.retry_count = retry_count
            if input_data is not None:
                step.input_data = input_data
            if state is not None:
                step.metadata_ = {**step.metadata_, "state": state}
            if status is StepStatus.COMPLETED and "decision" in step.metadata_:  # the decision is used up
                metadata = dict(step.metadata_)
                metadata["decided"] = metadata.pop("decision")
                step.metadata_ = metadata
            for artifact in artifacts or []:
                session.add(
                    WorkflowArtifact(
                        workflow_execution_id=step.workflow_execution_id, workflow_step_id=step.id, **artifact
                    )
                )
            execution.metadata_ = {**execution.metadata_, "heartbeat_at": _now().isoformat()}

        in_transaction(self.factory, write)

    def _wait(
        self, execution_id: uuid.UUID, step_row: WorkflowStep, wait: Wait, token: str, actor: Principal
    ) -> WorkflowStatus:
        def write(session: Session) -> WorkflowStatus:
            execution = _locked_run(session, execution_id, token)
            if execution.status is S.CANCELLING:  # cancelled while the step looked: honour it now
                queue.enqueue(session, execution_id)
                return S.CANCELLING
            first = execution.status is not S.WAITING
            self._transition(
                session,
                execution,
                S.WAITING,
                actor,
                event_type="workflow.waiting",
                extra={"step": step_row.step_name, "until": wait.until.isoformat(), "waiting_for": wait.waiting_for}
                if first
                else None,
            )
            execution.metadata_ = {
                **execution.metadata_,
                "waiting": {"step": step_row.step_name, "until": wait.until.isoformat(), **wait.waiting_for},
            }
            queue.enqueue(session, execution_id, at=wait.until)
            return S.WAITING

        try:
            return in_transaction(self.factory, write)
        except _SupersededError:
            return self._status(execution_id)

    def _pause(
        self, execution_id: uuid.UUID, step_row: WorkflowStep, pause: Pause, token: str, actor: Principal
    ) -> WorkflowStatus:
        def write(session: Session) -> WorkflowStatus:
            execution = _locked_run(session, execution_id, token)
            if execution.status is S.CANCELLING:
                queue.enqueue(session, execution_id)
                return S.CANCELLING
            self._transition(
                session,
                execution,
                S.PAUSED,
                actor,
                severity=EventSeverity.WARNING,
                extra={"step": step_row.step_name, "reason": pause.reason, "details": pause.details},
            )
            metadata = {k: v for k, v in execution.metadata_.items() if k != "waiting"}
            execution.metadata_ = {
                **metadata,
                "paused": {"step": step_row.step_name, "reason": pause.reason, **pause.details},
            }
            return S.PAUSED

        try:
            return in_transaction(self.factory, write)
        except _SupersededError:
            return self._status(execution_id)

    def _finish(
        self,
        execution_id: uuid.UUID,
        definition: WorkflowDefinition,
        status: WorkflowStatus,
        outputs: dict[str, dict[str, Any]],
        error: dict[str, Any] | None,
        actor: Principal,
        token: str | None,
    ) -> WorkflowStatus:
        def write(session: Session) -> FinishedRun | WorkflowStatus:
            execution = _locked_run(session, execution_id, token)
            if execution.status is S.CANCELLING and status is not S.CANCELLED and status is not S.FAILED:
                return S.CANCELLING  # a cancel arrived during the last step: it wins over completion
            self._transition(
                session,
                execution,
                status,
                actor,
                severity=EventSeverity.INFO if status is S.COMPLETED else EventSeverity.WARNING,
                extra={"error": error} if error else None,
            )
            execution.completed_at = _now()
            execution.output_data = {name: output for name, output in outputs.items()}
            execution.error_details = error
            execution.metadata_ = {
                k: v for k, v in execution.metadata_.items() if k not in {"waiting", "paused", "runner"}
            }
            for step in session.scalars(
                select(WorkflowStep).where(
                    WorkflowStep.workflow_execution_id == execution_id,
                    WorkflowStep.status.in_([StepStatus.PENDING, StepStatus.WAITING, StepStatus.PAUSED]),
                )
            ):
                step.status = StepStatus.SKIPPED
            self._set_agent_busy(session, execution.agent_id, execution_id, busy=False)
            return FinishedRun(
                execution_id,
                execution.customer_id,
                execution.agent_id,
                dict(execution.input_data),
                status,
                self.factory,
            )

        finished = in_transaction(self.factory, write)
        if finished is S.CANCELLING:
            return self._cancel_now(execution_id, definition, outputs, actor)
        assert isinstance(finished, FinishedRun)
        if definition.on_finish is not None:
            try:
                definition.on_finish(finished)
            except Exception:  # the run's record is final; a failing clean-up is logged, not fatal
                logger.exception("on_finish of %s failed", definition.name)
        return status

    def _cancel_now(
        self,
        execution_id: uuid.UUID,
        definition: WorkflowDefinition,
        outputs: dict[str, dict[str, Any]],
        actor: Principal,
    ) -> WorkflowStatus:
        """The safe point of a cancel: undo what the run did (outside any transaction), then end `cancelled`."""
        with unit_of_work(self.factory) as session:
            execution = session.get(WorkflowExecution, execution_id)
            assert execution is not None
            steps = list(
                session.scalars(select(WorkflowStep).where(WorkflowStep.workflow_execution_id == execution_id))
            )
            cancelled = CancelledRun(
                execution_id,
                execution.customer_id,
                execution.agent_id,
                dict(execution.input_data),
                {s.step_name: dict(s.output_data) for s in steps if s.status is StepStatus.COMPLETED},
                {s.step_name: dict(s.metadata_.get("state", {})) for s in steps if s.metadata_.get("state")},
                dict(execution.metadata_.get("cancel", {})),
                self.factory,
            )
        undo: dict[str, Any] | None = None
        error: dict[str, Any] = {"type": "cancelled", "message": "cancelled", **cancelled.reason}
        final = S.CANCELLED
        if definition.on_cancel is not None:
            try:
                undo = definition.on_cancel(cancelled)
            except Exception as failure:
                logger.exception("on_cancel of %s failed", definition.name)
                final = S.FAILED
                error = {**error, "type": "cancel_failed", "message": f"undoing the run failed: {failure}"[:2000]}
        if undo:
            error["undone"] = undo
        return self._finish(execution_id, definition, final, {**cancelled.outputs, **outputs}, error, actor, None)

    @staticmethod
    def _set_agent_busy(session: Session, agent_id: uuid.UUID, execution_id: uuid.UUID, *, busy: bool) -> None:
        state = session.scalar(select(AgentState).where(AgentState.agent_id == agent_id).with_for_update())
        if state is None:
            state = AgentState(agent_id=agent_id)
            session.add(state)
        active = [w for w in (state.active_workflows or []) if w != str(execution_id)]
        if busy:
            active.append(str(execution_id))
        state.active_workflows = active
        state.current_workflow_id = execution_id if busy else (uuid.UUID(active[-1]) if active else None)
        state.current_status = AgentStatusDetail.BUSY if active else AgentStatusDetail.IDLE
        state.last_activity = _now()

    # --- people's decisions --------------------------------------------------------------------------------------

    def cancel(
        self, execution_id: uuid.UUID, actor: Principal, *, kind: str = "cancel", session: Session | None = None
    ) -> WorkflowStatus:
        """Ask a run to stop: a pending one is cancelled at once; any other active one becomes `cancelling`, and a
        worker undoes what it did at its next safe point. Returns the status after the request."""

        def write(session: Session) -> WorkflowStatus:
            execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
            if execution is None:
                raise NotFoundError("No such workflow run.")
            if kind == "abort" and execution.status is not S.PAUSED:
                raise ConflictError(
                    f"Only a paused run can be aborted; this one is {execution.status}.",
                    details={"current_status": str(execution.status)},
                )
            if execution.status not in CANCELLABLE:
                return execution.status
            reason = {"kind": kind, "by": actor.name, "at": _now().isoformat()}
            if execution.status is S.PENDING:
                self._transition(session, execution, S.CANCELLED, actor, severity=EventSeverity.WARNING)
                execution.completed_at = _now()
                execution.error_details = {"type": "cancelled", "message": "cancelled", **reason}
                for step in session.scalars(
                    select(WorkflowStep).where(WorkflowStep.workflow_execution_id == execution_id)
                ):
                    step.status = StepStatus.SKIPPED
                return S.CANCELLED
            self._transition(
                session,
                execution,
                S.CANCELLING,
                actor,
                event_type="workflow.aborted" if kind == "abort" else "workflow.cancel_requested",
                severity=EventSeverity.WARNING,
            )
            execution.metadata_ = {**execution.metadata_, "cancel": reason}
            queue.enqueue(session, execution_id)  # a running step finishes first (the queue's per-run lock)
            return S.CANCELLING

        return self._in(session, write)

    def abort(self, execution_id: uuid.UUID, actor: Principal, *, session: Session | None = None) -> WorkflowStatus:
        """A human's "no" to a paused run: undo what it did and end it `cancelled`."""
        return self.cancel(execution_id, actor, kind="abort", session=session)

    def resume(
        self, execution_id: uuid.UUID, actor: Principal, note: str | None = None, *, session: Session | None = None
    ) -> WorkflowStatus:
        """A human's "go on" to a paused run: the paused step continues with the decision recorded."""

        def write(session: Session) -> WorkflowStatus:
            execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
            if execution is None:
                raise NotFoundError("No such workflow run.")
            if execution.status is not S.PAUSED:
                raise ConflictError(
                    f"Only a paused run can be resumed; this one is {execution.status}.",
                    details={"current_status": str(execution.status)},
                )
            step = session.scalar(
                select(WorkflowStep).where(
                    WorkflowStep.workflow_execution_id == execution_id, WorkflowStep.status == StepStatus.PAUSED
                )
            )
            decision = {"decision": "resume", "by": actor.name, "at": _now().isoformat(), "note": note}
            if step is not None:
                step.metadata_ = {**step.metadata_, "decision": decision}
            # Back to waiting-for-a-worker: the job takes it from here (`waiting → running` on its claim).
            self._transition(
                session, execution, S.RUNNING, actor, event_type="workflow.resumed", extra={"decision": decision}
            )
            metadata = {k: v for k, v in execution.metadata_.items() if k not in {"paused", "runner"}}
            execution.metadata_ = {**metadata, "heartbeat_at": _now().isoformat()}
            queue.enqueue(session, execution_id)
            return S.RUNNING

        return self._in(session, write)


def _unknown(execution: WorkflowExecution) -> WorkflowDefinition:
    return WorkflowDefinition(execution.metadata_.get("workflow") or "unknown", execution.workflow_type, ())


_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="optiinfra-step")


def _call_with_timeout(func: Callable[[StepContext], StepResult], context: StepContext, timeout: float) -> StepResult:
    """Run a step with a deadline. Python cannot kill a thread: a step that overruns is recorded as timed out and
    left to finish on its own; steps must therefore be idempotent and carry idempotency keys for side effects."""
    future = _pool.submit(func, context)
    return future.result(timeout=timeout)


__all__ = [
    "CancelledRun",
    "ConflictError",
    "FinishedRun",
    "Pause",
    "StepContext",
    "StepDefinition",
    "StepFailedError",
    "Wait",
    "WorkflowCancelledError",
    "WorkflowDefinition",
    "WorkflowRunner",
    "in_transaction",
]
