"""An `optiinfra serve` process on a migrated database, a tenant with an application agent, and an OpenTelemetry
tracer and logger provider exporting to the server with the real OTLP/HTTP exporters."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from optiinfra.auth.keys import generate_key
from optiinfra.auth.principal import Role
from optiinfra.client import OptiInfraClient
from optiinfra.db import migrations
from optiinfra.models import AgentType
from tests.api.conftest import _free_port
from tests.conftest import DatabaseFactory, url_for_env


@dataclass
class OtlpServer:
    base_url: str
    operator_key: str
    engine: Engine


@pytest.fixture(scope="session")
def otlp_server(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpServer]:
    """`optiinfra serve` as its own process, the way an instrumented application meets it."""
    url = create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)
    port = _free_port()
    operator_key = generate_key(Role.OPERATOR)
    log = tmp_path_factory.mktemp("otlp-server") / "serve.log"
    env = {
        **os.environ,
        "OPTIINFRA_DATABASE_URL": url_for_env(url),
        "OPTIINFRA_DATA_DIR": str(log.parent / "data"),
        "OPTIINFRA_ADMIN_KEY": operator_key,
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "optiinfra", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    try:
        yield OtlpServer(base_url=base_url, operator_key=operator_key, engine=engine)
    finally:
        process.terminate()
        process.wait(timeout=30)
        engine.dispose()


@dataclass
class OtlpTenant:
    customer_id: uuid.UUID
    key: str
    agent_id: uuid.UUID
    agent_key: str
    client: OptiInfraClient


@pytest.fixture
def otlp_tenant(otlp_server: OtlpServer) -> Iterator[OtlpTenant]:
    """A customer with its key, and an application agent serving it (quality records are attributed to one)."""
    with OptiInfraClient(otlp_server.base_url, otlp_server.operator_key) as operator:
        suffix = uuid.uuid4().hex[:10]
        customer = operator.create_customer(f"Otlp {suffix}", f"otlp-{suffix}@tenant.example")
        agent = operator.register_agent(AgentType.APPLICATION, f"app-{suffix}", customer_ids=[customer.id])
    assert agent.api_key is not None
    with OptiInfraClient(otlp_server.base_url, customer.api_key) as client:
        yield OtlpTenant(
            customer_id=customer.id, key=customer.api_key, agent_id=agent.id, agent_key=agent.api_key, client=client
        )


def rows_of(engine: Engine, customer_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The customer's quality records by request id."""
    with engine.connect() as connection:
        result = connection.execute(
            text("SELECT * FROM quality_metrics WHERE customer_id = :c ORDER BY timestamp"), {"c": customer_id}
        ).mappings()
        return {row["request_id"]: dict(row) for row in result}


def wait_for(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def auth_headers(otlp_tenant: OtlpTenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {otlp_tenant.key}"}
