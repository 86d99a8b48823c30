"""A real OptiInfra server (uvicorn on loopback, in a thread) on a migrated database, and clients for it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, create_engine, text

from optiinfra.api.app import AppConfig, create_app
from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.client import OptiInfraClient
from optiinfra.customers.schemas import CustomerWithKey
from optiinfra.db import migrations
from optiinfra.enums import AgentType, CustomerPlan
from optiinfra.workflows import queue
from tests.conftest import DatabaseFactory


@dataclass
class Server:
    base_url: str
    operator_key: str
    engine: Engine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(
    engine: Engine, data_dir: Path, *, auth_failures_per_minute: int = 1_000_000, **config: Any
) -> Iterator[Server]:
    """The app on a migrated database, served by uvicorn on a loopback port in a thread; `config` sets further
    AppConfig fields."""
    operator_key = generate_key(Role.OPERATOR)
    app = create_app(
        AppConfig(
            engine=engine,
            operator_key_digest=key_digest(operator_key),
            max_body_bytes=256 * 1024,
            health_sweep_seconds=0,  # tests call the sweep themselves, with a chosen clock
            data_dir=data_dir,
            # The permission tables send hundreds of wrong keys from one address; throttling has its own test.
            auth_failures_per_minute=auth_failures_per_minute,
            **config,
        )
    )
    port = _free_port()
    # As `optiinfra serve`: forwarded headers are judged by the app (OPTIINFRA_TRUSTED_PROXIES), not by uvicorn.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    # Like `optiinfra serve`: a workflow worker in the same process takes the runs the API starts.
    worker = queue.Worker(
        engine.url, app.state.workflow_runner.advance, app.state.session_factory, concurrency=2, name="test-worker"
    )
    worker.start_in_thread()
    try:
        yield Server(base_url=f"http://127.0.0.1:{port}", operator_key=operator_key, engine=engine)
    finally:
        worker.stop()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def api_server(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    engine = create_engine(create_database(), pool_size=10, max_overflow=10)
    migrations.upgrade(engine)
    with running_server(engine, tmp_path_factory.mktemp("server-data")) as server:
        yield server
    engine.dispose()


@pytest.fixture
def http(api_server: Server) -> Iterator[httpx.Client]:
    """A raw HTTP client on the server, for requests the typed client would not send."""
    with httpx.Client(base_url=api_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def operator(api_server: Server) -> Iterator[OptiInfraClient]:
    with OptiInfraClient(api_server.base_url, api_server.operator_key) as client:
        yield client


@dataclass
class Tenant:
    customer: CustomerWithKey
    client: OptiInfraClient

    @property
    def id(self) -> uuid.UUID:
        return self.customer.id


@dataclass
class AgentHandle:
    agent_id: uuid.UUID
    key: str
    client: OptiInfraClient


@pytest.fixture
def make_tenant(api_server: Server, operator: OptiInfraClient) -> Iterator[Callable[..., Tenant]]:
    clients: list[OptiInfraClient] = []

    def factory(plan: CustomerPlan = CustomerPlan.STARTUP) -> Tenant:
        suffix = uuid.uuid4().hex[:10]
        customer = operator.create_customer(f"Tenant {suffix}", f"ops-{suffix}@tenant.example", plan=plan)
        client = OptiInfraClient(api_server.base_url, customer.api_key)
        clients.append(client)
        return Tenant(customer=customer, client=client)

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def make_agent(api_server: Server, operator: OptiInfraClient) -> Iterator[Callable[..., AgentHandle]]:
    clients: list[OptiInfraClient] = []

    def factory(
        agent_type: AgentType = AgentType.COST, *, serves: Sequence[Tenant] = (), **options: object
    ) -> AgentHandle:
        """A registered agent assigned to the tenants it `serves` (an agent acts only for its customers)."""
        registered = operator.register_agent(
            agent_type,
            f"{agent_type}-{uuid.uuid4().hex[:10]}",
            customer_ids=[tenant.id for tenant in serves],
            **options,  # type: ignore[arg-type]
        )
        assert registered.api_key is not None
        client = OptiInfraClient(api_server.base_url, registered.api_key)
        clients.append(client)
        return AgentHandle(agent_id=registered.id, key=registered.api_key, client=client)

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()


@pytest.fixture
def other_tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()


@pytest.fixture
def agent(make_agent: Callable[..., AgentHandle], tenant: Tenant) -> AgentHandle:
    """A cost agent serving `tenant`."""
    return make_agent(serves=[tenant])


def settled_event_count(api_server: Server) -> int:
    """Events so far, once the server's workflow worker has nothing in hand (it writes events as runs advance)."""
    deadline = time.monotonic() + 60
    with api_server.engine.connect() as connection:
        while connection.execute(
            # Active runs, and runs that ended a moment ago (their clean-up, `on_finish`, writes just after).
            text(
                "SELECT count(*) FROM workflow_executions WHERE status IN ('pending', 'running', 'cancelling') "
                "OR completed_at > now() - interval '1 second'"
            )
        ).scalar_one():
            assert time.monotonic() < deadline, "a workflow run never settled"
            connection.rollback()
            time.sleep(0.1)
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())
