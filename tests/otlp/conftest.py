"""An `optiinfra serve` process on a migrated database, a tenant with an application agent, and a small
OpenAI-compatible server on loopback for the real `openai` SDK to call."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from optiinfra.auth.keys import generate_key
from optiinfra.auth.principal import Role
from optiinfra.client import OptiInfraClient
from optiinfra.db import migrations
from optiinfra.enums import AgentType
from tests.api.conftest import _free_port
from tests.conftest import DatabaseFactory, url_for_env


@dataclass
class OtlpServer:
    base_url: str
    grpc_endpoint: str  # OTLP/gRPC, as OTEL_EXPORTER_OTLP_ENDPOINT names it
    operator_key: str
    engine: Engine


@pytest.fixture(scope="session")
def otlp_server(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpServer]:
    """`optiinfra serve` as its own process, the way an instrumented application meets it."""
    url = create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)
    port, grpc_port = _free_port(), _free_port()
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
            [sys.executable, "-m", "optiinfra", "serve", "--port", str(port), "--otlp-grpc-port", str(grpc_port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # CI shares 2 cores between two test workers
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
        yield OtlpServer(
            base_url=base_url, grpc_endpoint=f"http://127.0.0.1:{grpc_port}", operator_key=operator_key, engine=engine
        )
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


SERVED_MODEL = "gpt-4o-mini-2024-07-18"
DELAY_SECONDS = 0.12


@dataclass(frozen=True)
class Backend:
    """One model deployment behind the fake server: the model string it answers with, how long it takes (uniformly
    between the two delays) and what it says."""

    served_model: str = SERVED_MODEL
    delay_seconds: tuple[float, float] = (DELAY_SECONDS, DELAY_SECONDS)
    content: str = "Paris."


class FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/chat/completions answering like OpenAI, with a fresh id and the usage it reports. Requests go to the
    `backends` in turn (a canary rollout serves two versions of one model side by side)."""

    answered: ClassVar[list[dict[str, Any]]] = []
    backends: ClassVar[list[Backend]] = [Backend()]
    delays: ClassVar[random.Random] = random.Random(0)
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        with FakeOpenAI.lock:
            backend = FakeOpenAI.backends[len(FakeOpenAI.answered) % len(FakeOpenAI.backends)]
            answer = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:20]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": backend.served_model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": backend.content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 11 + len(request["messages"]), "completion_tokens": 3, "total_tokens": 15},
            }
            FakeOpenAI.answered.append(answer)
            delay = FakeOpenAI.delays.uniform(*backend.delay_seconds)
        time.sleep(delay)
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_openai() -> Iterator[str]:
    """The fake server's base URL, as the `openai` SDK takes it; one deployment answering "Paris." unless a test
    sets `FakeOpenAI.backends`."""
    FakeOpenAI.answered.clear()
    FakeOpenAI.backends = [Backend()]
    FakeOpenAI.delays = random.Random(0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
