"""The periodic work beside the job queue: the same for `optiinfra worker` and `optiinfra serve`'s worker process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from optiinfra import background
from optiinfra.auth.principal import Principal
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import AgentCustomer, AgentType
from optiinfra.quality import service as quality_service
from tests.conftest import DatabaseFactory
from tests.factories import make_agent, make_customer


@pytest.fixture
def engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


def test_the_work_is_partitions_monitoring_and_collection_each_at_its_interval(engine: Engine) -> None:
    factory = make_session_factory(engine)
    intervals = [interval for interval, _ in background.periodic_work(factory)]
    assert intervals == [background.PARTITION_INTERVAL, background.MONITOR_INTERVAL, background.COLLECT_INTERVAL]
    # serve --demo monitors at the demo's pace: the partitions' upkeep stays.
    assert [i for i, _ in background.periodic_work(factory, monitor_seconds=0, collect_seconds=0)] == [
        background.PARTITION_INTERVAL
    ]


def test_its_monitoring_pass_judges_the_versions_with_recent_traffic(engine: Engine) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = make_agent(session, type=AgentType.APPLICATION)
        session.add(AgentCustomer(agent_id=agent.id, customer_id=customer.id))
        session.flush()
        records = [
            {
                "request_id": f"r-{i}",
                "model_name": "m",
                "model_version": "v1",
                "timestamp": (now - timedelta(hours=6) + timedelta(seconds=20 * i)).isoformat(),
                "overall_quality_score": 0.8 + (i % 7) / 100,
                "latency_ms": 300.0 + i % 50,
                "metadata": {"route": "chat"},
            }
            for i in range(1000)
        ]
        quality_service.ingest(session, Principal.operator(), records, customer_id=customer.id, agent_id=agent.id)
    lines: list[str] = []
    for _, function in background.periodic_work(make_session_factory(engine), say=lines.append):
        function()
    assert any(line.startswith("pass: 1 judged") for line in lines), lines
