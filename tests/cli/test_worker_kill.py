"""A worker process killed mid-way: no step left running forever, no duplicate regressions, another takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.models import (
    Agent,
    AgentType,
    QualityRegression,
    StepStatus,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowStep,
)
from optiinfra.quality import service as quality_service
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow
from optiinfra.quality.simulation import Traffic
from tests.cli.test_two_servers import records
from tests.conftest import url_for_env
from tests.factories import make_customer
from tests.workflows.slow_workflow import runner_for

ROOT = Path(__file__).resolve().parents[2]


def test_a_workflow_killed_mid_step_is_taken_over_and_finished(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = Agent(type=AgentType.ORCHESTRATOR, name=f"kill-{uuid.uuid4().hex[:6]}")
        session.add(agent)
        session.flush()
        customer_id, agent_id = customer.id, agent.id
    url = url_for_env(database_url)
    runner = runner_for(url, tmp_path)
    execution_id = runner.create(
        "slow_test_workflow",
        customer_id=customer_id,
        agent_id=agent_id,
        input_data={"sleep": 30},
        actor=Principal.operator(),
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.workflows.slow_workflow", url, str(tmp_path), str(execution_id)],
        cwd=ROOT,
        env={**os.environ},
    )
    deadline = time.monotonic() + 30
    while True:  # wait until the slow step is running in the child
        with Session(engine) as session:
            slow = session.scalar(
                select(WorkflowStep).where(
                    WorkflowStep.workflow_execution_id == execution_id, WorkflowStep.step_name == "slow"
                )
            )
            if slow is not None and slow.status is StepStatus.RUNNING:
                break
        assert time.monotonic() < deadline, "the child never reached the slow step"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait(10)

    # Another worker finds the abandoned run (its heartbeat stopped) and takes it over with a short step this time.
    with Session(engine) as session, session.begin():
        execution = session.get(WorkflowExecution, execution_id)
        assert execution is not None
        assert execution.status is WorkflowStatus.RUNNING  # what a crash leaves behind
        execution.input_data = {"sleep": 0}
    assert runner.recover_stale(Principal.system("other-worker"), stale_after=timedelta(0)) == [execution_id]
    with Session(engine) as session:
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


def test_a_worker_killed_during_detection_leaves_no_duplicate_for_the_next(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        session.add(Agent(type=AgentType.APPLICATION, name=f"app-{uuid.uuid4().hex[:6]}"))
        session.flush()
        customer_id = customer.id
        quality_service.ingest(
            session,
            Principal.operator(),
            records(400, Traffic(), now - timedelta(hours=5), "base", 3),
            customer_id=customer_id,
            agent_id=None,
        )
        quality_service.establish_baseline(
            session,
            Principal.operator(),
            BaselineCreate(
                customer_id=customer_id, model_name="m", model_version="v1", window=BaselineWindow(last_n=400)
            ),
        )
        quality_service.ingest(
            session,
            Principal.operator(),
            records(300, replace(Traffic(), overall_factor=0.7), now - timedelta(minutes=30), "bad", 4),
            customer_id=customer_id,
            agent_id=None,
        )
    env = {**os.environ, "OPTIINFRA_DATABASE_URL": url_for_env(database_url), "OPTIINFRA_DATA_DIR": str(tmp_path)}
    for delay in (0.3, 0.8, 1.5):  # killed at different moments of its pass
        worker = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "worker", "--once"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    survivor = subprocess.run(
        [sys.executable, "-m", "optiinfra", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert survivor.returncode == 0, survivor.stdout + survivor.stderr
    with engine.connect() as connection:
        per_metric = connection.execute(
            select(QualityRegression.metric_name, func.count())
            .where(QualityRegression.resolved_at.is_(None))
            .group_by(QualityRegression.metric_name)
        ).all()
    assert per_metric
    assert all(count == 1 for _, count in per_metric)
    engine.dispose()
