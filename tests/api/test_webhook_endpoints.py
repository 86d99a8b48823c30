"""Agents' webhook endpoints over the API: refused at registration unless safe, checked again when a rollout calls
them, and a failing endpoint's answer never shows up in the run.

Test servers can only run on loopback, which OptiInfra refuses by default; the tests that expect calls to go through
set OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1 (the server runs in this process, so the setting reaches it), as an operator
with agents on the same host would.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import text

from optiinfra.client import OptiInfraClient
from optiinfra.config import ALLOW_PRIVATE_ENDPOINTS_ENV
from optiinfra.enums import AgentType
from tests.api.conftest import AgentHandle, Server, Tenant

REMOTE_SECRET = "remote-body-7c1e-do-not-leak"


class FleetAgent(BaseHTTPRequestHandler):
    """An agent's webhook: records each phase call, answers with `status` and a body holding a secret."""

    calls: ClassVar[list[dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FleetAgent.calls.append({"path": self.path, "key": self.headers["Idempotency-Key"], "phase": body["name"]})
        payload = {"done": True} if FleetAgent.status < 300 else {"error": REMOTE_SECRET}
        data = json.dumps(payload).encode()
        self.send_response(FleetAgent.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fleet_endpoint() -> Iterator[str]:
    FleetAgent.calls, FleetAgent.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FleetAgent)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def private_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV, raising=False)


def stored_endpoint(api_server: Server, name: str) -> list[str | None]:
    with api_server.engine.connect() as connection:
        rows = connection.execute(text("SELECT endpoint FROM agents WHERE name = :name"), {"name": name})
        return list(rows.scalars())


@pytest.mark.usefixtures("private_refused")
@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://127.0.0.1:8101/internal#", "fragment"),
        ("http://127.0.0.1:8101", "127.0.0.1 is a loopback address"),
        ("http://localhost:8101", "loopback"),
        ("http://[::ffff:127.0.0.1]:8101", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.5:9000", "private"),
        ("http://ops:hunter2@agent.example.com", "user-info"),
        ("ftp://agent.example.com", "http or https"),
    ],
)
def test_an_unsafe_endpoint_is_refused_at_registration(
    endpoint: str, message: str, http: httpx.Client, api_server: Server
) -> None:
    name = f"cost-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {api_server.operator_key}"}
    response = http.post("/api/v1/agents", headers=headers, json={"type": "cost", "name": name, "endpoint": endpoint})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert message in error["message"]
    assert error["details"]["problems"][0]["location"] == ["body", "endpoint"]
    assert stored_endpoint(api_server, name) == [], "a refused registration stored the agent"
    # Re-registering an existing agent with the endpoint is refused the same way, and the stored one stays.
    http.post("/api/v1/agents", headers=headers, json={"type": "cost", "name": name}).raise_for_status()
    again = http.post("/api/v1/agents", headers=headers, json={"type": "cost", "name": name, "endpoint": endpoint})
    assert again.status_code == 422
    assert stored_endpoint(api_server, name) == [None]


@pytest.mark.usefixtures("private_refused")
def test_loopback_refusal_names_the_setting_that_allows_it(api_server: Server, http: httpx.Client) -> None:
    response = http.post(
        "/api/v1/agents",
        headers={"Authorization": f"Bearer {api_server.operator_key}"},
        json={"type": "cost", "name": f"cost-{uuid.uuid4().hex[:8]}", "endpoint": "http://127.0.0.1:8101"},
    )
    assert "OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS=1" in response.json()["error"]["message"]


@pytest.mark.usefixtures("private_refused")
def test_a_public_endpoint_is_accepted(operator: OptiInfraClient) -> None:
    registered = operator.register_agent(
        AgentType.COST, f"cost-{uuid.uuid4().hex[:8]}", endpoint="https://agents.example.net:9000/fleet"
    )
    assert registered.endpoint == "https://agents.example.net:9000/fleet"


def approved_spot_migration(agent: AgentHandle, tenant: Tenant) -> uuid.UUID:
    """An approved spot migration of three instances, proposed by `agent` for `tenant`: its optimization id."""
    recommendation = agent.client.create_recommendation(
        tenant.id,
        "spot_migration",
        "Move the batch fleet to spot",
        confidence_score=0.8,
        data={"instances": ["gpu-0", "gpu-1", "gpu-2"]},
    )
    decision = tenant.client.approve(recommendation.id, "go")
    assert decision.optimization is not None
    return decision.optimization.id


# No traffic reaches the changed instances in these tests, so each applied phase waits for evidence, then pauses for a
# human two seconds on.
GATE = {"bake_seconds": 0, "min_samples": 20, "deadline_seconds": 2, "poll_seconds": 1}


def test_with_private_endpoints_allowed_a_local_agent_receives_every_phase_call(
    private_allowed: None, fleet_endpoint: str, make_agent: Callable[..., AgentHandle], tenant: Tenant
) -> None:
    agent = make_agent(AgentType.COST, endpoint=fleet_endpoint, serves=[tenant])
    optimization_id = approved_spot_migration(agent, tenant)

    rollout = agent.client.roll_out_spot_migration(optimization_id, executor="webhook", **GATE)
    assert agent.client.wait_for_workflow(rollout.id, timeout=60).status == "paused"
    tenant.client.resume_workflow(rollout.id, "no traffic yet, go on")
    second = agent.client.wait_for_workflow(rollout.id, timeout=60)
    assert second.status == "paused", second.error_details
    assert second.paused_for is not None
    assert second.paused_for["phase"] == "phase_50"
    tenant.client.abort_workflow(rollout.id)
    ended = agent.client.wait_for_workflow(rollout.id, timeout=60)

    assert ended.status == "cancelled", ended.error_details
    assert [(call["path"], call["phase"]) for call in FleetAgent.calls] == [
        ("/optiinfra/phases/apply", "phase_10"),
        ("/optiinfra/phases/apply", "phase_50"),
        ("/optiinfra/phases/undo", "phase_50"),
        ("/optiinfra/phases/undo", "phase_10"),
    ]
    assert len({call["key"] for call in FleetAgent.calls}) == 4


def test_an_endpoint_refused_at_call_time_is_never_called(
    fleet_endpoint: str, make_agent: Callable[..., AgentHandle], tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered while the operator allowed private endpoints; the setting is off when the rollout runs."""
    monkeypatch.setenv(ALLOW_PRIVATE_ENDPOINTS_ENV, "1")
    agent = make_agent(AgentType.COST, endpoint=fleet_endpoint, serves=[tenant])
    optimization_id = approved_spot_migration(agent, tenant)
    monkeypatch.delenv(ALLOW_PRIVATE_ENDPOINTS_ENV)

    rollout = agent.client.roll_out_spot_migration(optimization_id, executor="webhook", **GATE)
    run = agent.client.wait_for_workflow(rollout.id, timeout=60)

    assert run.status == "failed"
    assert "was not called" in json.dumps(run.error_details)
    assert "127.0.0.1 is a loopback address" in json.dumps(run.error_details)
    assert FleetAgent.calls == []


def test_a_failing_endpoint_body_never_appears_in_the_run(
    private_allowed: None,
    fleet_endpoint: str,
    make_agent: Callable[..., AgentHandle],
    tenant: Tenant,
    http: httpx.Client,
) -> None:
    FleetAgent.status = 403
    agent = make_agent(AgentType.COST, endpoint=fleet_endpoint, serves=[tenant])
    optimization_id = approved_spot_migration(agent, tenant)

    rollout = agent.client.roll_out_spot_migration(optimization_id, executor="webhook", **GATE)
    run = agent.client.wait_for_workflow(rollout.id, timeout=60)

    assert run.status == "failed"
    assert "refused the phase: HTTP 403" in json.dumps(run.error_details)
    # A 4xx is final for the executor; the runner may retry the step, always with the same idempotency key.
    assert len({(call["phase"], call["key"]) for call in FleetAgent.calls}) == 1
    raw = http.get(f"/api/v1/workflows/{run.id}", headers={"Authorization": f"Bearer {agent.key}"})
    assert REMOTE_SECRET not in raw.text
    events = http.get("/api/v1/events", headers={"Authorization": f"Bearer {tenant.customer.api_key}"})
    assert REMOTE_SECRET not in events.text
