"""The workflow runner: everything it does is in the workflow tables and the event log."""

from __future__ import annotations

import stat
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from optiinfra.auth.principal import Principal
from optiinfra.errors import ConflictError, InvalidTransitionError
from optiinfra.files import directory_mode
from optiinfra.models import (
    AgentState,
    ArtifactType,
    Event,
    StepStatus,
    WorkflowArtifact,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
    WorkflowType,
)
from optiinfra.workflows.engine import (
    Pause,
    StepContext,
    StepDefinition,
    StepFailedError,
    Wait,
    WorkflowDefinition,
    WorkflowRunner,
    in_transaction,
)
from optiinfra.workflows.states import require_transition
from tests.workflows.conftest import Env

ACTOR = Principal.operator()


def runner_with(
    env: Env, *steps: StepDefinition, name: str | None = None, resumable: bool = True
) -> tuple[WorkflowRunner, str]:
    runner = WorkflowRunner(env.factory, env.data_dir / "artifacts")
    workflow = name or f"test-{uuid.uuid4().hex[:6]}"
    runner.register(WorkflowDefinition(workflow, WorkflowType.HEALTH_CHECK, steps, resumable=resumable))
    return runner, workflow


def start(env: Env, runner: WorkflowRunner, name: str, **input_data: Any) -> uuid.UUID:
    return runner.create(
        name, customer_id=env.customer_id, agent_id=env.cost_agent_id, input_data=input_data, actor=ACTOR
    )


def steps_of(env: Env, execution_id: uuid.UUID) -> list[WorkflowStep]:
    with env.factory() as session:
        return list(
            session.scalars(
                select(WorkflowStep)
                .where(WorkflowStep.workflow_execution_id == execution_id)
                .order_by(WorkflowStep.step_order)
            )
        )


def execution(env: Env, execution_id: uuid.UUID) -> WorkflowExecution:
    with env.factory() as session:
        row = session.get(WorkflowExecution, execution_id)
        assert row is not None
        return row


def event_types(env: Env, execution_id: uuid.UUID) -> list[str]:
    with env.factory() as session:
        return list(
            session.scalars(
                select(Event.event_type)
                .where(Event.data["subject"]["workflow_execution_id"].astext == str(execution_id))
                .order_by(Event.created_at)
            )
        )


def test_steps_run_in_order_pass_outputs_and_write_artifacts(env: Env) -> None:
    def first(context: StepContext) -> dict[str, Any]:
        context.write_artifact("../../escape/report.md", ArtifactType.REPORT, "# Report\n", "text/markdown")
        return {"value": context.input["start"] + 1}

    def second(context: StepContext) -> dict[str, Any]:
        return {"value": context.outputs["first"]["value"] * 10}

    runner, name = runner_with(env, StepDefinition("first", first), StepDefinition("second", second))
    execution_id = start(env, runner, name, start=4)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.COMPLETED
    rows = steps_of(env, execution_id)
    assert [(s.step_name, s.status, s.output_data) for s in rows] == [
        ("first", StepStatus.COMPLETED, {"value": 5}),
        ("second", StepStatus.COMPLETED, {"value": 50}),
    ]
    assert all(s.started_at and s.completed_at and s.started_at <= s.completed_at for s in rows)
    done = execution(env, execution_id)
    assert done.output_data["second"] == {"value": 50}
    assert done.started_at
    assert done.completed_at
    with env.factory() as session:
        artifact = session.scalar(
            select(WorkflowArtifact).where(WorkflowArtifact.workflow_execution_id == execution_id)
        )
    assert artifact is not None
    assert artifact.artifact_name == "report.md"  # the path outside the execution's folder was refused
    assert artifact.artifact_size_bytes == len("# Report\n")
    assert artifact.artifact_path.startswith(str(env.data_dir / "artifacts" / str(execution_id)))
    # Private: the file 0600, its folder and the artifacts folder 0700 (0711 when the tests run as root).
    written = Path(artifact.artifact_path)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert {stat.S_IMODE(folder.stat().st_mode) for folder in (written.parent, written.parent.parent)} == {
        directory_mode()
    }
    assert event_types(env, execution_id) == ["workflow.created", "workflow.started", "workflow.completed"]


def test_a_failing_step_is_retried_with_backoff_then_succeeds(env: Env) -> None:
    attempts: list[float] = []

    def flaky(context: StepContext) -> dict[str, Any]:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise ConnectionError("endpoint not ready")
        return {"attempt": context.attempt}

    runner, name = runner_with(env, StepDefinition("flaky", flaky, max_retries=3, backoff_seconds=0.05))
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.COMPLETED
    (step,) = steps_of(env, execution_id)
    assert step.retry_count == 2
    assert step.output_data == {"attempt": 2}
    assert step.error_details is not None
    assert step.error_details["message"] == "endpoint not ready"
    assert attempts[2] - attempts[1] >= attempts[1] - attempts[0] >= 0.05  # exponential backoff


def test_retries_are_bounded_and_the_error_is_recorded(env: Env) -> None:
    def broken(context: StepContext) -> dict[str, Any]:
        raise RuntimeError("still broken")

    after_called = []
    runner, name = runner_with(
        env,
        StepDefinition("broken", broken, max_retries=2, backoff_seconds=0.01),
        StepDefinition("after", lambda c: after_called.append(1) or {}),
    )
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.FAILED
    broken_step, after = steps_of(env, execution_id)
    assert (broken_step.status, broken_step.retry_count) == (StepStatus.FAILED, 2)
    assert after.status is StepStatus.SKIPPED
    assert after_called == []
    failed = execution(env, execution_id)
    assert failed.error_details == {"type": "RuntimeError", "step": "broken", "message": "still broken", "attempts": 3}
    assert event_types(env, execution_id)[-1] == "workflow.failed"


def test_an_expected_failure_is_not_retried(env: Env) -> None:
    calls = []

    def refuse(context: StepContext) -> dict[str, Any]:
        calls.append(1)
        raise StepFailedError("no capacity", {"zone": "a"})

    runner, name = runner_with(env, StepDefinition("refuse", refuse, max_retries=3))
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.FAILED
    assert calls == [1]
    assert execution(env, execution_id).error_details == {
        "type": "failed",
        "step": "refuse",
        "message": "no capacity",
        "details": {"zone": "a"},
    }


def test_a_step_that_overruns_its_timeout_times_the_workflow_out(env: Env) -> None:
    runner, name = runner_with(
        env, StepDefinition("slow", lambda c: time.sleep(1.0) or {}, timeout_seconds=0.2, max_retries=0)
    )
    execution_id = start(env, runner, name)
    started = time.monotonic()
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.TIMEOUT
    assert time.monotonic() - started < 0.9
    (step,) = steps_of(env, execution_id)
    assert step.status is StepStatus.FAILED
    assert step.error_details is not None
    assert step.error_details["type"] == "timeout"


def test_cancellation_stops_before_the_next_step(env: Env) -> None:
    release = threading.Event()
    runner, name = runner_with(
        env,
        StepDefinition("wait", lambda c: (release.wait(5) and {}) or {}),
        StepDefinition("never", lambda c: {"ran": True}),
    )
    execution_id = start(env, runner, name)
    result: list[WorkflowStatus] = []
    thread = threading.Thread(target=lambda: result.append(runner.run(execution_id, ACTOR)))
    thread.start()
    time.sleep(0.3)
    # Honoured at the next safe point: the running step finishes, the run is `cancelling` meanwhile.
    assert runner.cancel(execution_id, ACTOR) is WorkflowStatus.CANCELLING
    assert execution(env, execution_id).status is WorkflowStatus.CANCELLING
    release.set()
    thread.join(10)
    assert result == [WorkflowStatus.CANCELLED]
    assert [s.status for s in steps_of(env, execution_id)] == [StepStatus.COMPLETED, StepStatus.SKIPPED]
    assert "workflow.cancel_requested" in event_types(env, execution_id)


def test_a_cancel_during_the_last_step_is_never_overwritten_by_completion(env: Env) -> None:
    release = threading.Event()
    undone: list[dict[str, Any]] = []
    runner = WorkflowRunner(env.factory, env.data_dir / "artifacts")
    name = f"test-{uuid.uuid4().hex[:6]}"
    runner.register(
        WorkflowDefinition(
            name,
            WorkflowType.HEALTH_CHECK,
            (StepDefinition("first", lambda c: {"did": 1}), StepDefinition("last", lambda c: release.wait(5) and {})),
            on_cancel=lambda run: undone.append(dict(run.outputs)) or {"undid": sorted(run.outputs)},
        )
    )
    execution_id = start(env, runner, name)
    result: list[WorkflowStatus] = []
    thread = threading.Thread(target=lambda: result.append(runner.run(execution_id, ACTOR)))
    thread.start()
    deadline = time.monotonic() + 10
    while steps_of(env, execution_id)[1].status is not StepStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert runner.cancel(execution_id, ACTOR) is WorkflowStatus.CANCELLING
    release.set()
    thread.join(10)
    assert result == [WorkflowStatus.CANCELLED]
    ended = execution(env, execution_id)
    assert ended.status is WorkflowStatus.CANCELLED
    assert ended.error_details is not None
    assert ended.error_details["undone"] == {"undid": ["first", "last"]}
    assert "last" in undone[0]
    assert "workflow.completed" not in event_types(env, execution_id)


def test_a_waiting_step_keeps_its_state_and_holds_nothing_while_it_waits(env: Env) -> None:
    visits: list[dict[str, Any]] = []

    def patient(context: StepContext) -> Any:
        visits.append(dict(context.state))
        count = int(context.state.get("count", 0)) + 1
        if count < 3:
            return Wait(datetime.now(UTC), {"count": count}, {"count": count})
        return {"visits": count}

    runner, name = runner_with(env, StepDefinition("patient", patient))
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.WAITING
    waiting = execution(env, execution_id)
    assert waiting.metadata_["waiting"]["count"] == 1
    assert steps_of(env, execution_id)[0].status is StepStatus.WAITING
    with env.engine.connect() as connection:  # the next look is a job in the queue, locked to this run
        jobs = connection.execute(
            text("SELECT status, lock, scheduled_at FROM procrastinate_jobs WHERE lock = :lock ORDER BY id"),
            {"lock": f"workflow:{execution_id}"},
        ).all()
    # The first job (deferred with the run) is replaced by the wake-up: one job of a run waits in the queue at a time.
    assert [j.status for j in jobs] == ["cancelled", "todo"]
    assert jobs[1].scheduled_at is not None
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.WAITING
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.COMPLETED
    assert visits == [{}, {"count": 1}, {"count": 2}]
    assert event_types(env, execution_id).count("workflow.waiting") == 2


def test_a_paused_step_waits_for_a_human_and_resumes_with_the_decision(env: Env) -> None:
    def ask(context: StepContext) -> Any:
        if context.decision is None:
            return Pause("not sure", {"evidence": 1}, {"kept": True})
        return {"decision": context.decision["decision"], "state": context.state}

    runner, name = runner_with(env, StepDefinition("ask", ask), StepDefinition("after", lambda c: {"ok": 1}))
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.PAUSED
    assert execution(env, execution_id).metadata_["paused"]["reason"] == "not sure"
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.PAUSED  # a job finds nothing to do
    with pytest.raises(ConflictError):  # only a paused run can be aborted
        runner.abort(start(env, runner, name), ACTOR)
    assert runner.resume(execution_id, ACTOR, "looks fine") is WorkflowStatus.RUNNING
    with pytest.raises(ConflictError):
        runner.resume(execution_id, ACTOR)  # only a paused run can be resumed
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.COMPLETED
    first = steps_of(env, execution_id)[0]
    assert first.output_data == {"decision": "resume", "state": {"kept": True}}
    assert first.metadata_["decided"]["note"] == "looks fine"
    types = event_types(env, execution_id)
    assert types.index("workflow.paused") < types.index("workflow.resumed") < types.index("workflow.completed")


def test_aborting_a_paused_run_undoes_it_and_ends_cancelled(env: Env) -> None:
    undone: list[str] = []
    runner = WorkflowRunner(env.factory, env.data_dir / "artifacts")
    name = f"test-{uuid.uuid4().hex[:6]}"
    runner.register(
        WorkflowDefinition(
            name,
            WorkflowType.HEALTH_CHECK,
            (StepDefinition("did", lambda c: {"x": 1}), StepDefinition("ask", lambda c: Pause("?", {}, {"half": 1}))),
            on_cancel=lambda run: undone.extend([*run.outputs, *run.states]) or {"ok": True},
        )
    )
    execution_id = start(env, runner, name)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.PAUSED
    assert runner.abort(execution_id, ACTOR) is WorkflowStatus.CANCELLING
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.CANCELLED
    assert undone == ["did", "ask"]
    ended = execution(env, execution_id)
    assert ended.error_details is not None
    assert ended.error_details["kind"] == "abort"
    assert [s.status for s in steps_of(env, execution_id)] == [StepStatus.COMPLETED, StepStatus.SKIPPED]
    assert "workflow.aborted" in event_types(env, execution_id)


@pytest.mark.parametrize("current", list(WorkflowStatus))
@pytest.mark.parametrize("target", list(WorkflowStatus))
def test_every_status_pair_is_allowed_exactly_when_the_table_says(
    current: WorkflowStatus, target: WorkflowStatus
) -> None:
    allowed = {
        ("pending", "running"), ("pending", "cancelled"), ("pending", "failed"),
        ("running", "running"), ("running", "waiting"), ("running", "paused"), ("running", "cancelling"),
        ("running", "completed"), ("running", "failed"), ("running", "timeout"),
        ("waiting", "running"), ("waiting", "cancelling"), ("waiting", "failed"),
        ("paused", "running"), ("paused", "cancelling"),
        ("cancelling", "cancelled"), ("cancelling", "failed"),
    }  # fmt: skip
    if (str(current), str(target)) in allowed:
        require_transition(current, target)
    else:
        with pytest.raises(InvalidTransitionError) as refused:
            require_transition(current, target)
        assert refused.value.details["current_status"] == str(current)


def test_the_agent_state_follows_the_running_workflow(env: Env) -> None:
    seen: dict[str, Any] = {}

    def look(context: StepContext) -> dict[str, Any]:
        with env.factory() as session:
            state = session.scalar(select(AgentState).where(AgentState.agent_id == env.cost_agent_id))
            assert state is not None
            seen.update(status=state.current_status, current=state.current_workflow_id, active=state.active_workflows)
        return {}

    runner, name = runner_with(env, StepDefinition("look", look))
    execution_id = start(env, runner, name)
    runner.run(execution_id, ACTOR)
    assert seen == {"status": "busy", "current": execution_id, "active": [str(execution_id)]}
    with env.factory() as session:
        state = session.scalar(select(AgentState).where(AgentState.agent_id == env.cost_agent_id))
        assert state is not None
        assert (state.current_status, state.current_workflow_id, state.active_workflows) == ("idle", None, [])


def _simulate_crash(env: Env, execution_id: uuid.UUID, step_order: int) -> None:
    """What a killed worker leaves behind: the run and one step 'running', stamped with the dead worker's token."""
    with env.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE workflow_executions SET status = 'running', started_at = now(), "
                'metadata = metadata || \'{"runner": "dead-worker"}\'::jsonb WHERE id = :id'
            ),
            {"id": execution_id},
        )
        connection.execute(
            text(
                "UPDATE workflow_steps SET status = CASE WHEN step_order < :order THEN 'completed' "
                "WHEN step_order = :order THEN 'running' ELSE 'pending' END::step_status, "
                "output_data = CASE WHEN step_order < :order THEN '{\"done\": true}'::jsonb ELSE output_data END "
                "WHERE workflow_execution_id = :id"
            ),
            {"id": execution_id, "order": step_order},
        )


def test_a_crashed_resumable_run_is_taken_over_from_its_interrupted_step(env: Env) -> None:
    ran: list[str] = []
    runner, name = runner_with(
        env,
        StepDefinition("one", lambda c: ran.append("one") or {"done": True}),
        StepDefinition("two", lambda c: ran.append("two") or {"resumed": True}),
        StepDefinition("three", lambda c: ran.append("three") or {}),
    )
    execution_id = start(env, runner, name)
    _simulate_crash(env, execution_id, step_order=2)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.COMPLETED  # the retried job of the dead worker
    assert ran == ["two", "three"]
    two = steps_of(env, execution_id)[1]
    assert two.retry_count == 1
    assert two.error_details is not None
    assert two.error_details["type"] == "crashed"
    assert "workflow.taken_over" in event_types(env, execution_id)


def test_a_crashed_run_that_cannot_resume_is_failed_cleanly(env: Env) -> None:
    runner, name = runner_with(
        env, StepDefinition("one", lambda c: {}), StepDefinition("two", lambda c: {}), resumable=False
    )
    execution_id = start(env, runner, name)
    _simulate_crash(env, execution_id, step_order=2)
    assert runner.run(execution_id, ACTOR) is WorkflowStatus.FAILED
    failed = execution(env, execution_id)
    assert failed.error_details is not None
    assert failed.error_details["type"] == "crashed"
    assert [s.status for s in steps_of(env, execution_id)] == [StepStatus.COMPLETED, StepStatus.FAILED]


def test_a_superseded_worker_records_nothing_more(env: Env) -> None:
    """Two workers on one run (the first one was thought dead): only the newer one's results are recorded."""
    release = threading.Event()
    runner, name = runner_with(
        env,
        StepDefinition("slow", lambda c: release.wait(5) and {"by": "old"}),
        StepDefinition("after", lambda c: {"ok": True}),
    )
    execution_id = start(env, runner, name)
    old: list[WorkflowStatus] = []
    thread = threading.Thread(target=lambda: old.append(runner.run(execution_id, ACTOR)))
    thread.start()
    deadline = time.monotonic() + 10
    while steps_of(env, execution_id)[0].status is not StepStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with env.engine.begin() as connection:  # another worker takes the run over
        connection.execute(
            text('UPDATE workflow_executions SET metadata = metadata || \'{"runner": "newer"}\' WHERE id = :id'),
            {"id": execution_id},
        )
    release.set()
    thread.join(10)
    assert steps_of(env, execution_id)[0].output_data == {}  # the old worker's result was not recorded
    assert execution(env, execution_id).status is WorkflowStatus.RUNNING


def test_a_deadlock_in_a_runner_transaction_is_retried_not_left_half_done(env: Env) -> None:
    """Two transactions that lock two rows in opposite orders: PostgreSQL kills one; `in_transaction` retries it."""
    runner, name = runner_with(env, StepDefinition("one", lambda c: {}))
    first, second = start(env, runner, name), start(env, runner, name)
    barrier = threading.Barrier(2)
    attempts: list[int] = []

    def work(a: uuid.UUID, b: uuid.UUID) -> None:
        def locked(session: Any) -> None:
            attempts.append(1)
            session.get(WorkflowExecution, a, with_for_update=True)
            if len(attempts) <= 2:
                barrier.wait(5)
            session.get(WorkflowExecution, b, with_for_update=True)
            row = session.get(WorkflowExecution, a)
            row.metadata_ = {**row.metadata_, "touched": True}

        in_transaction(env.factory, locked)

    threads = [threading.Thread(target=work, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(attempts) == 3  # both tried, the deadlock victim tried once more
    assert execution(env, first).metadata_["touched"] is True
    assert execution(env, second).metadata_["touched"] is True
