"""Rollouts run by real `optiinfra worker` processes on real PostgreSQL: a phase waits for its bake time and its
evidence, a worker killed with SIGKILL while the phase waits is replaced by others, and racing workers run the run
once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import URL

from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import (
    Agent,
    AgentType,
    Event,
    Optimization,
    OptimizationStatus,
    StepStatus,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
)
from optiinfra.quality.simulation import Traffic
from optiinfra.workflows.service import build_runner
from tests.conftest import url_for_env
from tests.factories import assign, make_customer
from tests.workflows.conftest import Env
from tests.workflows.slow_workflow import runner_for
from tests.workflows.test_spot_and_scaling import OPERATOR, approved_spot_migration, phase_traffic

ROOT = Path(__file__).resolve().parents[2]
GATE = {"bake_seconds": 3, "min_samples": 40, "deadline_seconds": 180, "poll_seconds": 1}


def _worker(url: URL, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": url_for_env(url),
        "OPTIINFRA_DATA_DIR": str(data_dir),
        "OPTIINFRA_STALLED_WORKER_SECONDS": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "optiinfra", "worker", "--interval", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_rollout_waits_for_evidence_and_survives_a_killed_worker(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url, pool_size=5)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        customer = make_customer(session)
        cost = Agent(type=AgentType.COST, name=f"cost-{uuid.uuid4().hex[:6]}")
        resource = Agent(type=AgentType.RESOURCE, name=f"resource-{uuid.uuid4().hex[:6]}")
        session.add_all([cost, resource])
        session.flush()
        assign(session, cost, customer)
        assign(session, resource, customer)
        env = Env(engine, factory, customer.id, cost.id, resource.id, tmp_path)
    _, optimization_id = approved_spot_migration(env)
    runner = build_runner(factory, tmp_path)
    rollout_id = runner.create(
        "spot_migration_rollout",
        customer_id=env.customer_id,
        agent_id=env.cost_agent_id,
        input_data={"optimization_id": str(optimization_id), "executor": "simulator", "gate": GATE},
        actor=OPERATOR,
    )

    def execution() -> WorkflowExecution:
        with factory() as session:
            row = session.get(WorkflowExecution, rollout_id)
            assert row is not None
            return row

    def wait_until(predicate: object, timeout: float = 90) -> WorkflowExecution:
        deadline = time.monotonic() + timeout
        while True:
            row = execution()
            if callable(predicate) and predicate(row):
                return row
            assert time.monotonic() < deadline, (row.status, row.metadata_)
            time.sleep(0.3)

    first = _worker(database_url, tmp_path)
    workers = [first]
    try:
        waiting = wait_until(lambda r: r.status is WorkflowStatus.WAITING)
        assert waiting.metadata_["waiting"]["phase"] == "phase_10"
        assert waiting.metadata_["waiting"]["samples"] == {}  # no traffic: it waits, it does not pass
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        workers = [_worker(database_url, tmp_path), _worker(database_url, tmp_path)]  # they race for the run
        fed: set[str] = set()
        deadline = time.monotonic() + 150
        while True:
            row = execution()
            if row.status not in {WorkflowStatus.WAITING, WorkflowStatus.RUNNING, WorkflowStatus.PENDING}:
                break
            waiting_for = row.metadata_.get("waiting") or {}
            phase = waiting_for.get("phase")
            if row.status is WorkflowStatus.WAITING and phase and phase not in fed:
                started = datetime.fromisoformat(waiting_for["started_at"])
                if (datetime.now(UTC) - started).total_seconds() > 0.5:
                    phase_traffic(env, optimization_id, started, Traffic(), Traffic(), f"real-{phase}")
                    fed.add(phase)
            assert time.monotonic() < deadline, (row.status, row.metadata_)
            time.sleep(0.3)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
    done = execution()
    assert done.status is WorkflowStatus.COMPLETED, done.error_details
    with factory() as session:
        optimization = session.get(Optimization, optimization_id)
        assert optimization is not None
        assert optimization.status is OptimizationStatus.COMPLETED
        steps = {
            s.step_name: s
            for s in session.scalars(select(WorkflowStep).where(WorkflowStep.workflow_execution_id == rollout_id))
        }
        for name in ("phase_10", "phase_50", "phase_100"):
            output = steps[name].output_data
            # Judged only after the bake time, on enough records of both arms.
            assert datetime.fromisoformat(output["judged_at"]) >= datetime.fromisoformat(output["bake_until"])
            (verdict,) = output["gate"]["verdicts"]
            assert verdict["verdict"] == "pass"
            assert verdict["changed"]["sample_size"] >= 40
            assert verdict["control"]["sample_size"] >= 40
        completions = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(
                Event.event_type == "workflow.completed",
                Event.data["subject"]["workflow_execution_id"].astext == str(rollout_id),
            )
        )
    assert completions == 1
    engine.dispose()


def test_a_worker_killed_mid_step_is_replaced_and_the_step_is_retried_once(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session, session.begin():
        customer = make_customer(session)
        agent = Agent(type=AgentType.ORCHESTRATOR, name=f"kill-{uuid.uuid4().hex[:6]}")
        session.add(agent)
        session.flush()
        customer_id, agent_id = customer.id, agent.id
    url = url_for_env(database_url)
    runner = runner_for(url, tmp_path)
    execution_id = runner.create(
        "slow_test_workflow", customer_id=customer_id, agent_id=agent_id, input_data={"sleep": 60}, actor=OPERATOR
    )
    child_env = {**os.environ, "OPTIINFRA_STALLED_WORKER_SECONDS": "3"}
    command = [sys.executable, "-m", "tests.workflows.slow_workflow", url, str(tmp_path)]
    first = subprocess.Popen(command, cwd=ROOT, env=child_env)
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until the slow step runs in the first worker
            with factory() as session:
                slow = session.scalar(
                    select(WorkflowStep).where(
                        WorkflowStep.workflow_execution_id == execution_id, WorkflowStep.step_name == "slow"
                    )
                )
                if slow is not None and slow.status is StepStatus.RUNNING:
                    break
            assert time.monotonic() < deadline, "the first worker never reached the slow step"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with factory() as session, session.begin():  # make the retry quick
            row = session.get(WorkflowExecution, execution_id)
            assert row is not None
            row.input_data = {"sleep": 0}
        second = subprocess.Popen(command, cwd=ROOT, env=child_env)
        deadline = time.monotonic() + 90
        while True:
            with factory() as session:
                row = session.get(WorkflowExecution, execution_id)
                assert row is not None
                if row.status is WorkflowStatus.COMPLETED:
                    break
            assert time.monotonic() < deadline, (row.status, row.metadata_)
            time.sleep(0.3)
    finally:
        for child in (first, second):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait(10)
    with factory() as session:
        steps = session.scalars(
            select(WorkflowStep)
            .where(WorkflowStep.workflow_execution_id == execution_id)
            .order_by(WorkflowStep.step_order)
        ).all()
        assert [s.status for s in steps] == [StepStatus.COMPLETED] * 3
        assert steps[1].retry_count == 1
        assert steps[1].error_details is not None
        assert steps[1].error_details["type"] == "crashed"
    engine.dispose()
