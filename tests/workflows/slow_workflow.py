"""A workflow with a slow step, run by a queue worker in a child process (tests/workflows/test_durable_processes.py)
and killed mid-step."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from optiinfra.db.engine import make_session_factory
from optiinfra.enums import WorkflowType
from optiinfra.workflows.engine import StepContext, StepDefinition, WorkflowDefinition, WorkflowRunner


def _slow(context: StepContext) -> dict[str, Any]:
    time.sleep(float(context.input.get("sleep", 30)))
    return {"slept": True}


SLOW = WorkflowDefinition(
    "slow_test_workflow",
    WorkflowType.HEALTH_CHECK,
    (
        StepDefinition("quick", lambda c: {"ok": True}),
        StepDefinition("slow", _slow, timeout_seconds=120),
        StepDefinition("after", lambda c: {"done": True}),
    ),
)


def runner_for(url: str, data_dir: Path) -> WorkflowRunner:
    runner = WorkflowRunner(make_session_factory(create_engine(url)), data_dir)
    runner.register(SLOW)
    return runner


if __name__ == "__main__":  # python -m tests.workflows.slow_workflow URL DATA_DIR: a queue worker for it
    from sqlalchemy.engine import make_url

    from optiinfra.workflows import queue

    worker_runner = runner_for(sys.argv[1], Path(sys.argv[2]))
    queue.Worker(make_url(sys.argv[1]), worker_runner.advance, worker_runner.factory, concurrency=1).run()
