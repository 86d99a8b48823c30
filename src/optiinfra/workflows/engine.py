"""A small workflow runner whose record is the workflow tables.

A workflow is a named, ordered list of steps. Running it creates a `workflow_executions` row and one
`workflow_steps` row per step up front, then runs the steps in order, each in its own transaction, recording
status transitions, inputs and outputs, retries (up to `max_retries`, with exponential backoff), timeouts, errors
with details, and artifacts (files under `<data dir>/artifacts/<execution id>/`). A step is a plain function of a
`StepContext`; what it returns becomes its output and the next steps' input.

Why not a workflow library: the steps here are short, synchronous and few; what matters is that every transition
is a row in PostgreSQL (the record the API, the dashboard and recovery read), which a library would not give us
without an adapter as large as this runner.

Crash safety: the runner stamps `metadata.heartbeat_at` on the execution while it works. On start-up,
`recover_stale` finds executions left `running` with an old heartbeat: a resumable workflow continues from its
interrupted step (steps are written to be idempotent: their effects carry idempotency keys); any other is failed
cleanly with the reason. Nothing stays `running` forever.
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
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.events import service as events
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

logger = logging.getLogger("optiinfra.workflows")

STALE_AFTER = timedelta(minutes=5)


class StepFailedError(Exception):
    """A step's own, expected failure: not retried (unlike other exceptions), recorded with its details."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class WorkflowCancelledError(Exception):
    """The execution was cancelled while running."""


@dataclass(frozen=True)
class StepDefinition:
    name: str
    run: Callable[[StepContext], dict[str, Any]]
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
class WorkflowDefinition:
    name: str
    workflow_type: WorkflowType
    steps: tuple[StepDefinition, ...]
    resumable: bool = True
    # Runs after the run ends, whatever the outcome (releasing what its steps took, such as locks).
    on_finish: Callable[[FinishedRun], None] | None = None


@dataclass
class StepContext:
    """What a step sees: the run's input, earlier steps' outputs, a session factory and artifact writing."""

    execution_id: uuid.UUID
    customer_id: uuid.UUID
    agent_id: uuid.UUID
    input: Mapping[str, Any]
    outputs: dict[str, dict[str, Any]]
    attempt: int
    factory: sessionmaker[Session]
    artifact_root: Path
    step_id: uuid.UUID
    _artifacts: list[dict[str, Any]] = field(default_factory=list)

    def write_artifact(self, name: str, artifact_type: ArtifactType, content: bytes | str, content_type: str) -> Path:
        """Write a file under the data directory and record it as an artifact of this step."""
        safe = Path(name).name  # never a path outside the execution's folder
        folder = self.artifact_root / str(self.execution_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / safe
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
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


class WorkflowRunner:
    """Creates and runs executions of registered workflow definitions."""

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
    ) -> uuid.UUID:
        """Record a pending execution with all its steps; returns its id."""
        definition = self.definitions[name]
        with unit_of_work(self.factory) as session:
            execution = WorkflowExecution(
                agent_id=agent_id,
                customer_id=customer_id,
                workflow_type=definition.workflow_type,
                status=WorkflowStatus.PENDING,
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
            return execution.id

    # --- running -------------------------------------------------------------------------------------------------

    def run(self, execution_id: uuid.UUID, actor: Principal) -> WorkflowStatus:
        """Run (or resume) an execution to its end; returns its final status."""
        with unit_of_work(self.factory) as session:
            execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
            assert execution is not None
            definition = self.definitions[execution.metadata_["workflow"]]
            recorded = list(
                session.scalars(
                    select(WorkflowStep.step_name)
                    .where(WorkflowStep.workflow_execution_id == execution_id)
                    .order_by(WorkflowStep.step_order)
                )
            )
            mismatch = recorded != [step.name for step in definition.steps]
            if execution.status in {
                WorkflowStatus.COMPLETED,
                WorkflowStatus.FAILED,
                WorkflowStatus.CANCELLED,
                WorkflowStatus.TIMEOUT,
            }:
                return execution.status
            if mismatch:
                # Recorded by another version of the workflow: fail cleanly rather than run steps against
                # rows that mean something else.
                execution.status = WorkflowStatus.FAILED
                execution.completed_at = _now()
                execution.error_details = {
                    "type": "definition_changed",
                    "message": f"the recorded steps are not those of {definition.name}",
                }
                return WorkflowStatus.FAILED
            before = execution.status
            execution.status = WorkflowStatus.RUNNING
            execution.started_at = execution.started_at or _now()
            execution.metadata_ = {**execution.metadata_, "heartbeat_at": _now().isoformat()}
            customer_id, agent_id = execution.customer_id, execution.agent_id
            input_data = dict(execution.input_data)
            self._set_agent_busy(session, agent_id, execution_id, busy=True)
            events.record(
                session,
                event_type="workflow.started" if before is WorkflowStatus.PENDING else "workflow.resumed",
                actor=actor,
                customer_id=customer_id,
                agent_id=agent_id,
                subject={"workflow_execution_id": str(execution_id), "workflow": definition.name},
                before={"status": str(before)},
                after={"status": "running"},
            )
        outputs: dict[str, dict[str, Any]] = {}
        final = WorkflowStatus.COMPLETED
        error: dict[str, Any] | None = None
        for order, step in enumerate(definition.steps, start=1):
            step_row = self._step_row(execution_id, order)
            if step_row.status is StepStatus.COMPLETED:
                outputs[step.name] = dict(step_row.output_data)
                continue
            if step_row.status is StepStatus.SKIPPED:
                continue
            outcome, output, error = self._run_step(
                definition, step, step_row, execution_id, customer_id, agent_id, input_data, outputs
            )
            if outcome is StepStatus.COMPLETED:
                outputs[step.name] = output
                continue
            if outcome is StepStatus.SKIPPED:  # the workflow decided to stop here, successfully
                break
            final = self._status_after_failure(error)
            break
        self._finish(execution_id, definition, final, outputs, error, actor)
        return final

    @staticmethod
    def _status_after_failure(error: dict[str, Any] | None) -> WorkflowStatus:
        if error and error.get("type") == "cancelled":
            return WorkflowStatus.CANCELLED
        if error and error.get("type") == "timeout":
            return WorkflowStatus.TIMEOUT
        return WorkflowStatus.FAILED

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
    ) -> tuple[StepStatus, dict[str, Any], dict[str, Any] | None]:
        attempt = step_row.retry_count
        error: dict[str, Any]
        while True:
            if self._is_cancelled(execution_id):
                self._update_step(step_row.id, StepStatus.SKIPPED, error={"type": "cancelled"})
                return StepStatus.FAILED, {}, {"type": "cancelled", "step": step.name, "message": "cancelled"}
            self._update_step(
                step_row.id,
                StepStatus.RUNNING if attempt == step_row.retry_count else StepStatus.RETRYING,
                started=True,
                input_data={"input": input_data, "from_steps": sorted(outputs)},
                execution_id=execution_id,
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
            )
            try:
                output = _call_with_timeout(step.run, context, step.timeout_seconds)
            except FutureTimeout:
                error = {"type": "timeout", "step": step.name, "message": f"no result in {step.timeout_seconds} s"}
                self._update_step(step_row.id, StepStatus.FAILED, error=error, ended=True, artifacts=context._artifacts)
                return StepStatus.FAILED, {}, error
            except StepFailedError as failure:
                error = {"type": "failed", "step": step.name, "message": str(failure), "details": failure.details}
                self._update_step(step_row.id, StepStatus.FAILED, error=error, ended=True, artifacts=context._artifacts)
                return StepStatus.FAILED, {}, error
            except WorkflowCancelledError:
                error = {"type": "cancelled", "step": step.name, "message": "cancelled"}
                self._update_step(step_row.id, StepStatus.SKIPPED, error=error, ended=True)
                return StepStatus.FAILED, {}, error
            except Exception as failure:  # a step's unexpected error is retried, then recorded
                error = {"type": type(failure).__name__, "step": step.name, "message": str(failure)[:2000]}
                if attempt >= step.max_retries:
                    self._update_step(
                        step_row.id, StepStatus.FAILED, error=error, ended=True, artifacts=context._artifacts
                    )
                    return StepStatus.FAILED, {}, {**error, "attempts": attempt + 1}
                attempt += 1
                self._update_step(step_row.id, StepStatus.RETRYING, error=error, retry_count=attempt)
                time.sleep(step.backoff_seconds * 2 ** (attempt - 1))
                continue
            stop = bool(output.pop("_stop_workflow", False))
            self._update_step(
                step_row.id, StepStatus.COMPLETED, output=output, ended=True, artifacts=context._artifacts
            )
            return (StepStatus.SKIPPED if stop else StepStatus.COMPLETED), output, None

    def _update_step(
        self,
        step_id: uuid.UUID,
        status: StepStatus,
        *,
        started: bool = False,
        ended: bool = False,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        retry_count: int | None = None,
        input_data: dict[str, Any] | None = None,
        artifacts: list[dict[str, Any]] | None = None,
        execution_id: uuid.UUID | None = None,
    ) -> None:
        with unit_of_work(self.factory) as session:
            step = session.get(WorkflowStep, step_id, with_for_update=True)
            assert step is not None
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
            for artifact in artifacts or []:
                session.add(
                    WorkflowArtifact(
                        workflow_execution_id=step.workflow_execution_id, workflow_step_id=step.id, **artifact
                    )
                )
            if execution_id is not None:
                execution = session.get(WorkflowExecution, execution_id)
                assert execution is not None
                execution.metadata_ = {**execution.metadata_, "heartbeat_at": _now().isoformat()}

    def _is_cancelled(self, execution_id: uuid.UUID) -> bool:
        with unit_of_work(self.factory) as session:
            status = session.scalar(select(WorkflowExecution.status).where(WorkflowExecution.id == execution_id))
            return status is WorkflowStatus.CANCELLED

    def _finish(
        self,
        execution_id: uuid.UUID,
        definition: WorkflowDefinition,
        status: WorkflowStatus,
        outputs: dict[str, dict[str, Any]],
        error: dict[str, Any] | None,
        actor: Principal,
    ) -> None:
        with unit_of_work(self.factory) as session:
            execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
            assert execution is not None
            before = execution.status
            execution.status = status
            execution.completed_at = _now()
            execution.output_data = {name: output for name, output in outputs.items()}
            execution.error_details = error
            for step in session.scalars(
                select(WorkflowStep).where(
                    WorkflowStep.workflow_execution_id == execution_id, WorkflowStep.status == StepStatus.PENDING
                )
            ):
                step.status = StepStatus.SKIPPED
            self._set_agent_busy(session, execution.agent_id, execution_id, busy=False)
            finished = FinishedRun(
                execution_id,
                execution.customer_id,
                execution.agent_id,
                dict(execution.input_data),
                status,
                self.factory,
            )
            events.record(
                session,
                event_type=f"workflow.{status}",
                actor=actor,
                customer_id=execution.customer_id,
                agent_id=execution.agent_id,
                severity=EventSeverity.INFO if status is WorkflowStatus.COMPLETED else EventSeverity.WARNING,
                subject={"workflow_execution_id": str(execution_id), "workflow": definition.name},
                before={"status": str(before)},
                after={"status": str(status)},
                extra={"error": error} if error else None,
            )

        if definition.on_finish is not None:
            try:
                definition.on_finish(finished)
            except Exception:  # the run's record is final; a failing clean-up is logged, not fatal
                logger.exception("on_finish of %s failed", definition.name)

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

    # --- cancellation and recovery --------------------------------------------------------------------------------

    def cancel(self, execution_id: uuid.UUID, actor: Principal) -> WorkflowStatus:
        """Ask a pending or running execution to stop; a running step finishes, the rest are skipped."""
        with unit_of_work(self.factory) as session:
            execution = session.get(WorkflowExecution, execution_id, with_for_update=True)
            assert execution is not None
            if execution.status not in {WorkflowStatus.PENDING, WorkflowStatus.RUNNING}:
                return execution.status
            before = execution.status
            execution.status = WorkflowStatus.CANCELLED
            if before is WorkflowStatus.PENDING:
                execution.completed_at = _now()
                for step in session.scalars(
                    select(WorkflowStep).where(WorkflowStep.workflow_execution_id == execution_id)
                ):
                    step.status = StepStatus.SKIPPED
            events.record(
                session,
                event_type="workflow.cancel_requested",
                actor=actor,
                customer_id=execution.customer_id,
                agent_id=execution.agent_id,
                severity=EventSeverity.WARNING,
                subject={"workflow_execution_id": str(execution_id)},
                before={"status": str(before)},
                after={"status": "cancelled"},
            )
            return WorkflowStatus.CANCELLED

    def recover_stale(self, actor: Principal, *, stale_after: timedelta = STALE_AFTER) -> list[uuid.UUID]:
        """Resume or fail executions left running by a crashed process; returns the ids handled."""
        cutoff = _now() - stale_after
        with unit_of_work(self.factory) as session:
            candidates = [
                (execution.id, execution.metadata_.get("workflow"))
                for execution in session.scalars(
                    select(WorkflowExecution)
                    .where(WorkflowExecution.status == WorkflowStatus.RUNNING)
                    .with_for_update(skip_locked=True)
                )
                if datetime.fromisoformat(execution.metadata_.get("heartbeat_at", "1970-01-01T00:00:00+00:00")) < cutoff
            ]
        handled = []
        for execution_id, name in candidates:
            definition = self.definitions.get(name or "")
            with unit_of_work(self.factory) as session:
                for step in session.scalars(
                    select(WorkflowStep).where(
                        WorkflowStep.workflow_execution_id == execution_id,
                        WorkflowStep.status.in_([StepStatus.RUNNING, StepStatus.RETRYING]),
                    )
                ):
                    step.error_details = {"type": "crashed", "message": "the process running this step stopped"}
                    if definition is not None and definition.resumable and step.retry_count < step.max_retries:
                        step.status = StepStatus.PENDING
                        step.retry_count += 1
                    else:
                        step.status = StepStatus.FAILED
                        step.completed_at = _now()
            if definition is not None and definition.resumable:
                self.run(execution_id, actor)
            else:
                error = {"type": "crashed", "message": "the process running this workflow stopped; not resumable"}
                self._finish(
                    execution_id,
                    definition or WorkflowDefinition(name or "unknown", WorkflowType.HEALTH_CHECK, ()),
                    WorkflowStatus.FAILED,
                    {},
                    error,
                    actor,
                )
            handled.append(execution_id)
        return handled


_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="optiinfra-step")


def _call_with_timeout(
    func: Callable[[StepContext], dict[str, Any]], context: StepContext, timeout: float
) -> dict[str, Any]:
    """Run a step with a deadline. Python cannot kill a thread: a step that overruns is recorded as timed out and
    left to finish on its own; steps must therefore be idempotent and carry idempotency keys for side effects."""
    future = _pool.submit(func, context)
    return future.result(timeout=timeout)
