"""Two servers and two workers against one database at once: the concurrency guarantees still hold."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.db import migrations
from optiinfra.models import Agent, AgentCustomer, AgentType, Customer, QualityRegression
from optiinfra.quality.simulation import Traffic, simulate
from tests.cli.test_faults import _free_port, serve
from tests.conftest import url_for_env
from tests.factories import assign


def records(n: int, traffic: Traffic, start: datetime, prefix: str, seed: int) -> list[dict[str, object]]:
    columns = simulate(np.random.default_rng(seed), n, traffic)
    return [
        {
            "request_id": f"{prefix}-{i}",
            "model_name": "m",
            "model_version": "v1",
            "timestamp": (start + timedelta(seconds=5 * i)).isoformat(),
            "overall_quality_score": float(columns["overall"][i]),
            "latency_ms": float(columns["latency_ms"][i]),
            "hallucination_detected": bool(columns["hallucination"][i]),
        }
        for i in range(n)
    ]


def test_two_servers_and_two_workers_keep_every_guarantee(database_url: URL, tmp_path: Path) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    port_a, port_b = _free_port(), _free_port()
    with serve(database_url, tmp_path / "a", port_a), serve(database_url, tmp_path / "b", port_b):
        urls = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
        # Each server process has its own generated operator key; the tenant and agents are set up in the database.
        customer_key, agent_key = generate_key(Role.CUSTOMER), generate_key(Role.AGENT)
        with Session(engine) as session, session.begin():
            customer = Customer(
                name="Twin", email=f"twin-{uuid.uuid4().hex[:6]}@x.example", api_key=key_digest(customer_key)
            )
            agent = Agent(
                type=AgentType.APPLICATION, name=f"twin-{uuid.uuid4().hex[:6]}", api_key_digest=key_digest(agent_key)
            )
            session.add_all([customer, agent])
            session.flush()
            assign(session, agent, customer)
            customer_id = customer.id

        # 1. Overlapping batches through different servers at once: nothing lost, nothing twice.
        now = datetime.now(UTC)
        shared = records(3000, Traffic(), now - timedelta(hours=6), "shared", 1)
        results: list[dict[str, int]] = []

        def send(url: str, batch: list[dict[str, object]]) -> None:
            response = httpx.post(
                f"{url}/api/v1/quality/metrics",
                content=orjson.dumps({"records": batch}),
                headers={"Authorization": f"Bearer {customer_key}", "Content-Type": "application/json"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            results.append(response.json())

        threads = [
            threading.Thread(target=send, args=(urls[0], shared[:2000])),
            threading.Thread(target=send, args=(urls[1], shared[1000:])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(r["inserted"] for r in results) == 3000
        assert sum(r["duplicates"] for r in results) == 1000

        # 2. Two decisions on one recommendation through the two servers: exactly one wins.
        cost_key = generate_key(Role.AGENT)
        with Session(engine) as session, session.begin():
            cost_agent = Agent(
                type=AgentType.COST, name=f"twin-cost-{uuid.uuid4().hex[:6]}", api_key_digest=key_digest(cost_key)
            )
            session.add(cost_agent)
            session.flush()
            session.add(AgentCustomer(agent_id=cost_agent.id, customer_id=customer_id))
        with OptiInfraClient(urls[0], cost_key) as cost:
            recommendation = cost.create_recommendation(customer_id, "rightsizing", "twin", confidence_score=0.5)
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def decide(url: str, decision: str) -> None:
            with OptiInfraClient(url, customer_key) as client:
                barrier.wait()
                try:
                    outcomes.append(client.decide(recommendation.id, decision))
                except ApiError as error:
                    outcomes.append(error.status_code)

        threads = [
            threading.Thread(target=decide, args=(urls[0], "approve")),
            threading.Thread(target=decide, args=(urls[1], "reject")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(str(o) for o in outcomes if isinstance(o, int)) == ["409"]
        with engine.connect() as connection:
            assert (
                connection.execute(
                    text("SELECT count(*) FROM approvals WHERE recommendation_id = :id"), {"id": recommendation.id}
                ).scalar_one()
                == 1
            )

        # 3. A baseline, a degraded window, and two workers at once: one open regression per metric.
        with OptiInfraClient(urls[1], customer_key) as client:
            client.establish_baseline("m", "v1", window={"last_n": 3000})
            client.ingest_quality_metrics(
                records(300, replace(Traffic(), overall_factor=0.7), now - timedelta(minutes=40), "bad", 2)
            )
    env = {
        "OPTIINFRA_DATABASE_URL": url_for_env(database_url),
        "PATH": "/usr/bin:/bin",
        "OPTIINFRA_DATA_DIR": str(tmp_path / "w"),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "worker", "--once"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0].decode() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    with engine.connect() as connection:
        per_metric = connection.execute(
            select(QualityRegression.metric_name, func.count())
            .where(QualityRegression.resolved_at.is_(None))
            .group_by(QualityRegression.metric_name)
        ).all()
    assert per_metric
    assert all(count == 1 for _, count in per_metric)
    engine.dispose()
