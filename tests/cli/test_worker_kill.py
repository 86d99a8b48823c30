"""A worker process killed during detection leaves no duplicate regressions (workflow take-over after a kill:
tests/workflows/test_durable_processes.py and test_engine.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.models import (
    AgentType,
    QualityRegression,
)
from optiinfra.quality import service as quality_service
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow
from optiinfra.quality.simulation import Traffic
from tests.cli.test_two_servers import records
from tests.conftest import url_for_env
from tests.factories import assign, make_agent, make_customer

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_killed_during_detection_leaves_no_duplicate_for_the_next(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
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
