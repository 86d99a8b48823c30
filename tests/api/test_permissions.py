"""Who may call what: every /api/v1 operation for every kind of caller, and what one tenant can learn of another.

The table below names every operation in the OpenAPI document. One world serves the table: customer A with rows
proposed by agent X; customer B and agent Y are the outsiders. Each case calls one operation as one caller on a
row in the state the operation needs, and checks the status. Refused calls must change nothing, and a 404 must be
exactly the 404 for an id that does not exist, so no caller can learn that another tenant's row is there.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import text

from optiinfra.agents.schemas import AgentRegistered
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.customers.schemas import CustomerWithKey
from optiinfra.enums import AgentType, CustomerStatus, OptimizationStatus, RecommendationStatus
from tests.api.conftest import Server
from tests.api.conftest import settled_event_count as event_count

CALLERS = ("no_key", "bad_key", "operator", "customer_a", "customer_b", "agent_x", "agent_y")
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid_input"}


@dataclass
class World:
    """Customer A with rows proposed by agent X, which serves A; customer B, served by agent Y: neither sees A's
    rows, and Y can do nothing for A."""

    operator: OptiInfraClient
    operator_key: str
    customer_a: CustomerWithKey
    customer_b: CustomerWithKey
    agent_x: AgentRegistered
    agent_y: AgentRegistered
    bad_key: str = field(default_factory=lambda: "oi_cu_" + secrets.token_urlsafe(32))
    recommendation_titles: list[str] = field(default_factory=list)
    retired_keys: list[str] = field(default_factory=list)

    def key(self, caller: str) -> str | None:
        keys = {
            "no_key": None,
            "bad_key": self.bad_key,
            "operator": self.operator_key,
            "customer_a": self.customer_a.api_key,
            "customer_b": self.customer_b.api_key,
            "agent_x": self.agent_x.api_key,
            "agent_y": self.agent_y.api_key,
        }
        return keys[caller]

    def client(self, caller: str) -> OptiInfraClient:
        key = self.key(caller)
        assert key is not None
        return self.operator.with_key(key)

    def issued_keys(self) -> list[str]:
        """Every key issued to this world, current or rotated away."""
        keys = [self.customer_a.api_key, self.customer_b.api_key, self.agent_x.api_key, self.agent_y.api_key]
        return [key for key in keys if key is not None] + self.retired_keys

    def adopt_customer_a_key(self, response: dict[str, Any]) -> None:
        self.retired_keys.append(self.customer_a.api_key)
        self.customer_a = CustomerWithKey.model_validate(response)

    def adopt_agent_x_key(self, response: dict[str, Any]) -> None:
        assert self.agent_x.api_key is not None
        self.retired_keys.append(self.agent_x.api_key)
        self.agent_x = AgentRegistered.model_validate(response)

    def new_customer(self) -> CustomerWithKey:
        suffix = uuid.uuid4().hex[:10]
        return self.operator.create_customer(f"Tenant C {suffix}", f"c-{suffix}@tenant-c.example")

    def assigned_to_x(self) -> dict[str, str]:
        """A new customer that agent X serves (besides A): the ids of the assignment."""
        customer = self.new_customer()
        self.operator.assign_customer(self.agent_x.id, customer.id)
        return {"agent_id": str(self.agent_x.id), "customer_id": str(customer.id)}

    def tenant_a_secrets(self) -> list[str]:
        """Strings that only someone allowed to see customer A's rows could know."""
        return [self.customer_a.name, self.customer_a.email, *self.recommendation_titles]

    def recommendation(self, state: RecommendationStatus) -> dict[str, str]:
        """A recommendation of A's by X, brought to `state`; its id and its optimization's id (when it has one)."""
        title = f"Rightsize the A fleet {uuid.uuid4().hex[:8]}"
        self.recommendation_titles.append(title)
        agent_x, customer_a = self.client("agent_x"), self.client("customer_a")
        recommendation = agent_x.create_recommendation(
            self.customer_a.id,
            "rightsizing",
            title,
            confidence_score=0.7,
            estimated_savings=Decimal("250.00"),
            description="Customer A's private capacity plan.",
        )
        ids = {"recommendation_id": str(recommendation.id)}
        if state is RecommendationStatus.PENDING:
            return ids
        decision = customer_a.approve(recommendation.id, "go ahead")
        assert decision.optimization is not None
        ids["optimization_id"] = str(decision.optimization.id)
        if state is RecommendationStatus.APPROVED:
            return ids
        agent_x.start_optimization(decision.optimization.id)
        if state is RecommendationStatus.EXECUTING:
            return ids
        agent_x.complete_optimization(decision.optimization.id, actual_savings=Decimal("240.00"))
        assert state is RecommendationStatus.COMPLETED
        return ids


def build_world(operator: OptiInfraClient, operator_key: str) -> World:
    suffix = uuid.uuid4().hex[:10]
    customer_a = operator.create_customer(f"Tenant A {suffix}", f"a-{suffix}@tenant-a.example")
    customer_b = operator.create_customer(f"Tenant B {suffix}", f"b-{suffix}@tenant-b.example")
    # Each agent serves one customer: X serves A, Y serves B. Y is the unrelated agent of issue 10's attack.
    agent_x = operator.register_agent(AgentType.COST, f"agent-x-{suffix}", customer_ids=[customer_a.id])
    agent_y = operator.register_agent(AgentType.COST, f"agent-y-{suffix}", customer_ids=[customer_b.id])
    return World(operator, operator_key, customer_a, customer_b, agent_x, agent_y)


@pytest.fixture
def world(operator: OptiInfraClient, api_server: Server) -> World:
    return build_world(operator, api_server.operator_key)


# --- the table ------------------------------------------------------------------------------------------------

Ids = dict[str, str]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    expected: Mapping[str, int]  # status for each caller with a valid key; no or a bad key is always 401
    target: Callable[[World], Ids] = lambda world: {}
    body: Callable[[World, Ids], dict[str, Any]] | None = None
    query: Callable[[Ids], dict[str, str]] | None = None
    probe: str | None = None  # read by the operator before and after a refused call: it must not change
    adopt: Callable[[World, dict[str, Any]], None] | None = None  # keep the world current after a success

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def expect(*, operator: int, customer_a: int, customer_b: int, agent_x: int, agent_y: int) -> dict[str, int]:
    return {
        "no_key": 401,
        "bad_key": 401,
        "operator": operator,
        "customer_a": customer_a,
        "customer_b": customer_b,
        "agent_x": agent_x,
        "agent_y": agent_y,
    }


def customer_a(world: World) -> Ids:
    return {"customer_id": str(world.customer_a.id)}


def agent_x(world: World) -> Ids:
    return {"agent_id": str(world.agent_x.id)}


def in_state(state: RecommendationStatus) -> Callable[[World], Ids]:
    return lambda world: world.recommendation(state)


def new_customer(world: World, ids: Ids) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:10]
    return {"name": f"New tenant {suffix}", "email": f"new-{suffix}@tenant.example"}


def proposal_for_a(world: World, ids: Ids) -> dict[str, Any]:
    return {
        "customer_id": str(world.customer_a.id),
        "type": "spot_migration",
        "title": "Move batch jobs to spot",
        "confidence_score": 0.6,
    }


# Quality rows of A's: metrics agent X reported, a baseline, a degraded window, a regression. Timestamps are hours
# in the past, so no optimization of the table (all completed just now) is taken for the change to roll back.
QUALITY_VERSION = "v1"
QUALITY_WINDOW = 60


def quality_records(ids: Ids, overall: float, hours_ago: float) -> list[dict[str, Any]]:
    start = datetime.now(UTC) - timedelta(hours=hours_ago)
    return [
        {
            "request_id": f"perm-{uuid.uuid4().hex}",
            "model_name": ids["model_name"],
            "model_version": QUALITY_VERSION,
            "timestamp": (start + timedelta(seconds=index)).isoformat(),
            "overall_quality_score": overall + (index % 5) / 100,
        }
        for index in range(QUALITY_WINDOW)
    ]


def quality_window(world: World) -> Ids:
    """A model of A's with a window of healthy metrics (reported by agent X) and no baseline yet."""
    ids = {"customer_id": str(world.customer_a.id), "model_name": f"model-{uuid.uuid4().hex}"}
    records = quality_records(ids, 0.85, hours_ago=3)
    world.client("agent_x").request(
        "POST", "/quality/metrics", json={"customer_id": ids["customer_id"], "records": records}
    )
    return ids


def quality_record(world: World) -> Ids:
    """One of A's records (reported by agent X)."""
    ids = {"customer_id": str(world.customer_a.id), "model_name": f"model-{uuid.uuid4().hex}"}
    record = quality_records(ids, 0.85, hours_ago=1)[0]
    world.client("agent_x").request(
        "POST", "/quality/metrics", json={"customer_id": ids["customer_id"], "records": [record]}
    )
    return {"customer_id": ids["customer_id"], "request_id": record["request_id"]}


def quality_baseline(world: World) -> Ids:
    """quality_window, with a baseline established from it."""
    ids = quality_window(world)
    world.client("customer_a").request("POST", "/quality/baselines", json=window_of(world, ids))
    return ids


def quality_degraded(world: World) -> Ids:
    """quality_baseline, then a window of much lower scores that detection will find."""
    ids = quality_baseline(world)
    records = quality_records(ids, 0.50, hours_ago=2)
    world.client("agent_x").request(
        "POST", "/quality/metrics", json={"customer_id": ids["customer_id"], "records": records}
    )
    return ids


def quality_regression(world: World) -> Ids:
    """quality_degraded, detected: an open regression of A's (attributed to agent X, whose metrics they are)."""
    ids = quality_degraded(world)
    report = world.client("customer_a").request("POST", "/quality/detect", json=window_of(world, ids))
    assert report["verdict"] == "regression", report
    return {**ids, "regression_id": report["regressions"][0]["id"]}


def window_of(world: World, ids: Ids) -> dict[str, Any]:
    """The body naming A's model and its newest window, for baselines and detection."""
    return {
        "customer_id": ids["customer_id"],
        "model_name": ids["model_name"],
        "model_version": QUALITY_VERSION,
        "window": {"last_n": QUALITY_WINDOW},
    }


def one_record_for_a(world: World, ids: Ids) -> dict[str, Any]:
    records = quality_records({"model_name": "perm-ingest"}, 0.9, hours_ago=1)[:1]
    return {"customer_id": ids["customer_id"], "records": records}


def application_agent_for_a(world: World) -> Ids:
    """A's metrics need an application agent to be attributed to when the caller is not an agent."""
    world.operator.register_agent(
        AgentType.APPLICATION, f"perm-application-{uuid.uuid4().hex[:10]}", customer_ids=[world.customer_a.id]
    )
    return customer_a(world)


_alphas = itertools.count(2)


def other_quality_settings(world: World, ids: Ids) -> dict[str, Any]:
    """Settings that differ from whatever is stored, so a refused update would show in the probe."""
    return {"alpha": next(_alphas) / 100}


# Agent state of X's: a config key, a free resource or one X holds, a registered capability.
SELF_OR_OPERATOR = expect(operator=200, customer_a=403, customer_b=403, agent_x=200, agent_y=403)


def agent_x_config(world: World) -> Ids:
    return {**agent_x(world), "config_key": "perm.max_parallel"}


def free_resource_for_x(world: World) -> Ids:
    return {**agent_x(world), "resource": f"perm-gpu-{uuid.uuid4().hex[:10]}"}


def resource_held_by_x(world: World) -> Ids:
    ids = free_resource_for_x(world)
    world.client("agent_x").request("POST", f"/agents/{ids['agent_id']}/locks/{ids['resource']}")
    return ids


def capability_of_x(world: World) -> Ids:
    """X registered (again) with one capability, so there is a capability row to change."""
    world.operator.register_agent(AgentType.COST, world.agent_x.name, capabilities=["perm-spot"])
    return {**agent_x(world), "capability_name": "perm-spot"}


def agent_metrics_body(world: World, ids: Ids) -> dict[str, Any]:
    return {
        "metrics": [{"metric_name": "queue_depth", "metric_value": 3, "recorded_at": datetime.now(UTC).isoformat()}]
    }


def resource_agent_for_a(world: World) -> Ids:
    """A's resource metrics and scaling events need a resource agent to be attributed to when the caller is not an
    agent."""
    world.operator.register_agent(
        AgentType.RESOURCE, f"perm-resource-{uuid.uuid4().hex[:10]}", customer_ids=[world.customer_a.id]
    )
    return customer_a(world)


def resource_metrics_for_a(world: World, ids: Ids) -> dict[str, Any]:
    sample = {
        "resource_type": "gpu",
        "instance_id": "i-perm",
        "metric_name": "utilization",
        "metric_value": 71.5,
        "unit": "percent",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return {"customer_id": ids["customer_id"], "metrics": [sample]}


def scaling_event_for_a(world: World, ids: Ids) -> dict[str, Any]:
    executed_at = datetime.now(UTC) - timedelta(minutes=2)
    return {
        "customer_id": ids["customer_id"],
        "event_type": "scale_up",
        "trigger_reason": "GPU utilization above 85 %",
        "before_state": {"instance_count": 2},
        "after_state": {"instance_count": 3},
        "success": True,
        "executed_at": executed_at.isoformat(),
        "completed_at": (executed_at + timedelta(seconds=40)).isoformat(),
    }


def scaling_event_of_a(world: World) -> Ids:
    """A scaling event of A's, recorded by agent X."""
    ids = customer_a(world)
    event = world.client("agent_x").request("POST", "/resources/scaling-events", json=scaling_event_for_a(world, ids))
    return {**ids, "scaling_event_id": event["id"]}


def workflow_of_a(world: World) -> Ids:
    """A finished spot-migration analysis of A's, run by agent X, with its report artifact."""
    ids = customer_a(world)
    client = world.client("agent_x")
    run = client.request(
        "POST", "/workflows/spot-migration/analyze", json={"customer_id": ids["customer_id"], "lookback_days": 1}
    )
    deadline = time.monotonic() + 60
    while run["status"] != "completed":  # the server's worker runs it
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
        run = client.request("GET", f"/workflows/{run['id']}")
    return {**ids, "workflow_id": run["id"], "artifact_id": run["artifacts"][0]["id"]}


def alert_route_body(world: World, ids: Ids) -> dict[str, Any]:
    # A name that never resolves: the server's worker tries the test alerts and fails at once, sending nothing.
    return {
        "customer_id": str(world.customer_a.id),
        "name": f"perm-{uuid.uuid4().hex[:8]}",
        "destination": "slack",
        "url": "https://hooks.invalid/services/perm",
    }


def alert_route_of_a(world: World) -> Ids:
    route = world.client("customer_a").request("POST", "/alert-routes", json=alert_route_body(world, {}))
    return {"route_id": route["id"]}


def alert_of_a(world: World) -> Ids:
    """A test alert of A's (pending or being retried: never failed yet, so a redelivery is a conflict)."""
    ids = alert_route_of_a(world)
    alert = world.client("customer_a").request("POST", f"/alert-routes/{ids['route_id']}/test")
    return {"alert_id": alert["id"]}


def prometheus_source_body(world: World, ids: Ids) -> dict[str, Any]:
    return {
        "customer_id": str(world.customer_a.id),
        "name": f"perm-{uuid.uuid4().hex[:8]}",
        "base_url": "https://prometheus.invalid",
        "auth_type": "bearer",
        "auth_secret": "a-token-never-shown",
    }


def prometheus_source_of_a(world: World) -> Ids:
    source = world.client("customer_a").request("POST", "/prometheus-sources", json=prometheus_source_body(world, {}))
    assert "auth_secret" not in source
    assert source["has_auth_secret"] is True
    return {"source_id": source["id"]}


ALERT_MANAGERS = expect(operator=200, customer_a=200, customer_b=404, agent_x=403, agent_y=403)


EVERYONE = expect(operator=200, customer_a=200, customer_b=200, agent_x=200, agent_y=200)
OPERATOR_ONLY = expect(operator=200, customer_a=403, customer_b=403, agent_x=403, agent_y=403)
AGENT_X_OR_OPERATOR = expect(operator=200, customer_a=403, customer_b=403, agent_x=200, agent_y=404)

OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/customers",
        expect(operator=201, customer_a=403, customer_b=403, agent_x=403, agent_y=403),
        body=new_customer,
    ),
    Operation("GET", "/api/v1/customers", OPERATOR_ONLY),
    Operation(
        "GET", "/api/v1/customers/me", expect(operator=403, customer_a=200, customer_b=200, agent_x=403, agent_y=403)
    ),
    Operation(
        "GET",
        "/api/v1/customers/{customer_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=404, agent_y=404),
        target=customer_a,
    ),
    Operation(
        "PATCH",
        "/api/v1/customers/{customer_id}",
        OPERATOR_ONLY,
        target=customer_a,
        body=lambda world, ids: {"plan": "enterprise"},
        probe="/customers/{customer_id}",
    ),
    Operation(
        "POST",
        "/api/v1/customers/{customer_id}/rotate-key",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=403, agent_y=403),
        target=customer_a,
        probe="/customers/{customer_id}",
        adopt=World.adopt_customer_a_key,
    ),
    Operation(
        "POST",
        "/api/v1/agents",
        # Re-registering agent X: the operator or X itself may; Y may not pass itself off as X.
        expect(operator=200, customer_a=403, customer_b=403, agent_x=200, agent_y=403),
        target=agent_x,
        body=lambda world, ids: {"type": "cost", "name": world.agent_x.name, "version": "2.0.0"},
        probe="/agents/{agent_id}",
    ),
    Operation("GET", "/api/v1/agents", EVERYONE),
    Operation("GET", "/api/v1/agents/{agent_id}", EVERYONE, target=agent_x),
    Operation(
        "POST",
        "/api/v1/agents/{agent_id}/heartbeat",
        expect(operator=403, customer_a=403, customer_b=403, agent_x=200, agent_y=403),
        target=agent_x,
        body=lambda world, ids: {"status": "healthy"},
        probe="/agents/{agent_id}",
    ),
    Operation(
        "POST",
        "/api/v1/agents/{agent_id}/customers",
        OPERATOR_ONLY,
        target=lambda world: {**agent_x(world), "new_customer_id": str(world.new_customer().id)},
        body=lambda world, ids: {"customer_id": ids["new_customer_id"]},
        probe="/agents/{agent_id}",
    ),
    Operation(
        "DELETE",
        "/api/v1/agents/{agent_id}/customers/{customer_id}",
        OPERATOR_ONLY,
        target=lambda world: world.assigned_to_x(),
        probe="/agents/{agent_id}",
    ),
    Operation(
        "POST",
        "/api/v1/agents/{agent_id}/rotate-key",
        OPERATOR_ONLY,
        target=agent_x,
        probe="/agents/{agent_id}",
        adopt=World.adopt_agent_x_key,
    ),
    Operation("GET", "/api/v1/events", EVERYONE, target=in_state(RecommendationStatus.COMPLETED)),
    Operation(
        "POST",
        "/api/v1/events",
        expect(operator=403, customer_a=403, customer_b=403, agent_x=201, agent_y=201),
        body=lambda world, ids: {"event_type": "probe.checked", "data": {"ok": True}},
    ),
    Operation(
        "POST",
        "/api/v1/recommendations",
        expect(operator=403, customer_a=403, customer_b=403, agent_x=201, agent_y=404),
        body=proposal_for_a,
    ),
    Operation("GET", "/api/v1/recommendations", EVERYONE, target=in_state(RecommendationStatus.COMPLETED)),
    Operation(
        "GET",
        "/api/v1/recommendations/summary",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=404, agent_y=404),
        target=customer_a,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "GET",
        "/api/v1/recommendations/{recommendation_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=in_state(RecommendationStatus.PENDING),
    ),
    Operation(
        "POST",
        "/api/v1/recommendations/{recommendation_id}/decision",
        expect(operator=403, customer_a=200, customer_b=404, agent_x=403, agent_y=403),
        target=in_state(RecommendationStatus.PENDING),
        body=lambda world, ids: {"decision": "approve", "comment": "fine by us"},
        probe="/recommendations/{recommendation_id}",
    ),
    Operation("GET", "/api/v1/optimizations", EVERYONE, target=in_state(RecommendationStatus.COMPLETED)),
    Operation(
        "GET",
        "/api/v1/optimizations/{optimization_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=in_state(RecommendationStatus.APPROVED),
    ),
    Operation(
        "POST",
        "/api/v1/optimizations/{optimization_id}/start",
        AGENT_X_OR_OPERATOR,
        target=in_state(RecommendationStatus.APPROVED),
        probe="/recommendations/{recommendation_id}",
    ),
    Operation(
        "POST",
        "/api/v1/optimizations/{optimization_id}/progress",
        AGENT_X_OR_OPERATOR,
        target=in_state(RecommendationStatus.EXECUTING),
        body=lambda world, ids: {"progress": 50},
        probe="/recommendations/{recommendation_id}",
    ),
    Operation(
        "POST",
        "/api/v1/optimizations/{optimization_id}/complete",
        AGENT_X_OR_OPERATOR,
        target=in_state(RecommendationStatus.EXECUTING),
        body=lambda world, ids: {"actual_savings": "200.00", "result": {"nodes": 4}},
        probe="/recommendations/{recommendation_id}",
    ),
    Operation(
        "POST",
        "/api/v1/optimizations/{optimization_id}/fail",
        AGENT_X_OR_OPERATOR,
        target=in_state(RecommendationStatus.EXECUTING),
        body=lambda world, ids: {"error": "spot capacity unavailable"},
        probe="/recommendations/{recommendation_id}",
    ),
    Operation(
        "POST",
        "/api/v1/optimizations/{optimization_id}/rollback",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=in_state(RecommendationStatus.COMPLETED),
        body=lambda world, ids: {"reason": "latency regressed"},
        probe="/recommendations/{recommendation_id}",
    ),
    Operation(
        "POST",
        "/api/v1/quality/metrics",
        # Agents report metrics as themselves, for a customer they serve.
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=application_agent_for_a,
        body=one_record_for_a,
    ),
    Operation(
        "POST",
        "/api/v1/quality/baselines",
        expect(operator=201, customer_a=201, customer_b=404, agent_x=201, agent_y=404),
        target=quality_window,
        body=window_of,
        probe="/quality/baselines",  # newest first: a baseline made by a refused call would show
    ),
    Operation(
        "GET",
        "/api/v1/quality/baselines",
        EVERYONE,
        target=quality_baseline,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "POST",
        "/api/v1/quality/detect",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=quality_degraded,
        body=window_of,
        probe="/quality/regressions",  # newest first, likewise
    ),
    Operation(
        "GET",
        "/api/v1/quality/regressions",
        EVERYONE,
        target=quality_regression,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "GET",
        "/api/v1/quality/regressions/{regression_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=quality_regression,
    ),
    Operation(
        "POST",
        "/api/v1/quality/regressions/{regression_id}/resolve",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=403, agent_y=403),
        target=quality_regression,
        body=lambda world, ids: {"notes": "the model server was restarted"},
        probe="/quality/regressions/{regression_id}",
    ),
    Operation(
        "POST",
        "/api/v1/quality/abtest",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=quality_baseline,
        body=lambda world, ids: {
            "customer_id": ids["customer_id"],
            "model_name": ids["model_name"],
            "control": {"model_version": QUALITY_VERSION},
            "candidate": {"model_version": "v2"},
        },
    ),
    Operation(
        "GET",
        "/api/v1/quality/metrics/{request_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=quality_record,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "POST",
        "/api/v1/quality/records/deletion",
        expect(operator=202, customer_a=403, customer_b=403, agent_x=403, agent_y=403),
        target=quality_record,
        body=lambda world, ids: {"customer_id": ids["customer_id"]},
        probe="/customers/{customer_id}",  # the request is kept in the customer's metadata
    ),
    Operation(
        "GET",
        "/api/v1/quality/settings",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=customer_a,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "PUT",
        "/api/v1/quality/settings",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=403, agent_y=403),
        target=customer_a,
        body=other_quality_settings,
        query=lambda ids: {"customer_id": ids["customer_id"]},
        probe="/customers/{customer_id}",  # settings are kept in the customer's metadata
    ),
    Operation(
        "GET",
        "/api/v1/otlp/settings",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=customer_a,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "PUT",
        "/api/v1/otlp/settings",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=403, agent_y=403),
        target=customer_a,
        body=lambda world, ids: {"route_from": [f"optiinfra.route_{next(_alphas)}", "span_name"]},
        query=lambda ids: {"customer_id": ids["customer_id"]},
        probe="/customers/{customer_id}",  # settings are kept in the customer's metadata
    ),
    Operation(
        "GET",
        "/api/v1/otlp/report",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=customer_a,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation("GET", "/api/v1/agents/{agent_id}/configs", SELF_OR_OPERATOR, target=agent_x_config),
    Operation(
        "PUT",
        "/api/v1/agents/{agent_id}/configs/{config_key}",
        SELF_OR_OPERATOR,
        target=agent_x_config,
        body=lambda world, ids: {"value": str(next(_alphas)), "config_type": "integer"},
        probe="/agents/{agent_id}/configs",
    ),
    Operation("GET", "/api/v1/agents/{agent_id}/state", SELF_OR_OPERATOR, target=agent_x),
    Operation(
        "PATCH",
        "/api/v1/agents/{agent_id}/state",
        SELF_OR_OPERATOR,
        target=agent_x,
        body=lambda world, ids: {"current_status": "busy", "resource_usage": {"gpu": next(_alphas)}},
        probe="/agents/{agent_id}/state",
    ),
    Operation(
        "POST",
        "/api/v1/agents/{agent_id}/locks/{resource}",
        # An agent takes locks for itself only; not even the operator takes one on its behalf.
        expect(operator=403, customer_a=403, customer_b=403, agent_x=200, agent_y=403),
        target=free_resource_for_x,
        probe="/locks",
    ),
    Operation(
        "DELETE",
        "/api/v1/agents/{agent_id}/locks/{resource}",
        SELF_OR_OPERATOR,
        target=resource_held_by_x,
        probe="/locks",
    ),
    Operation("GET", "/api/v1/locks", expect(operator=200, customer_a=403, customer_b=403, agent_x=200, agent_y=200)),
    Operation("GET", "/api/v1/agents/{agent_id}/capabilities", EVERYONE, target=capability_of_x),
    Operation(
        "PATCH",
        "/api/v1/agents/{agent_id}/capabilities/{capability_name}",
        SELF_OR_OPERATOR,
        target=capability_of_x,
        body=lambda world, ids: {"capability_version": f"1.{next(_alphas)}.0"},
        probe="/agents/{agent_id}/capabilities",
    ),
    Operation(
        "POST",
        "/api/v1/agents/{agent_id}/metrics",
        SELF_OR_OPERATOR,
        target=agent_x,
        body=agent_metrics_body,
        probe="/agents/{agent_id}/metrics?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z&bucket=30d",
    ),
    Operation("GET", "/api/v1/agents/{agent_id}/metrics", SELF_OR_OPERATOR, target=agent_x),
    Operation(
        "POST",
        "/api/v1/resources/metrics",
        # Agents report resources as themselves, for a customer they serve.
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=resource_agent_for_a,
        body=resource_metrics_for_a,
    ),
    Operation(
        "GET",
        "/api/v1/resources/metrics",
        EVERYONE,
        target=customer_a,
        query=lambda ids: {"customer_id": ids["customer_id"]},
    ),
    Operation(
        "POST",
        "/api/v1/resources/scaling-events",
        expect(operator=201, customer_a=403, customer_b=403, agent_x=201, agent_y=404),
        target=resource_agent_for_a,
        body=scaling_event_for_a,
        probe="/resources/scaling-events",
    ),
    Operation("GET", "/api/v1/resources/scaling-events", EVERYONE, target=scaling_event_of_a),
    Operation(
        "POST",
        "/api/v1/workflows/spot-migration/analyze",
        expect(operator=202, customer_a=403, customer_b=403, agent_x=202, agent_y=404),
        target=customer_a,
        body=lambda world, ids: {"customer_id": ids["customer_id"], "lookback_days": 1},
    ),
    Operation(
        "POST",
        "/api/v1/workflows/spot-migration/rollout",
        expect(operator=202, customer_a=403, customer_b=403, agent_x=202, agent_y=404),
        target=in_state(RecommendationStatus.APPROVED),
        body=lambda world, ids: {"optimization_id": ids["optimization_id"]},
        probe="/optimizations/{optimization_id}",
    ),
    Operation(
        "POST",
        "/api/v1/workflows/scaling-decision",
        # Agents X and Y are cost agents: the scaling decision runs on a resource agent.
        expect(operator=202, customer_a=403, customer_b=403, agent_x=422, agent_y=422),
        target=resource_agent_for_a,
        body=lambda world, ids: {"customer_id": ids["customer_id"]},
    ),
    Operation("GET", "/api/v1/workflows", EVERYONE, target=workflow_of_a),
    Operation(
        "GET",
        "/api/v1/workflows/{workflow_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=workflow_of_a,
    ),
    Operation(
        "POST",
        "/api/v1/workflows/{workflow_id}/cancel",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=workflow_of_a,
        probe="/workflows/{workflow_id}",
    ),
    Operation(
        "POST",
        "/api/v1/workflows/{workflow_id}/resume",
        # Only a paused run can be resumed (409 for this finished one); humans decide, agents may not.
        expect(operator=409, customer_a=409, customer_b=404, agent_x=403, agent_y=403),
        target=workflow_of_a,
        probe="/workflows/{workflow_id}",
    ),
    Operation(
        "POST",
        "/api/v1/workflows/{workflow_id}/abort",
        expect(operator=409, customer_a=409, customer_b=404, agent_x=403, agent_y=403),
        target=workflow_of_a,
        probe="/workflows/{workflow_id}",
    ),
    Operation(
        "GET",
        "/api/v1/workflows/{workflow_id}/artifacts/{artifact_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=workflow_of_a,
    ),
    Operation(
        "GET",
        "/api/v1/resources/scaling-events/{scaling_event_id}",
        expect(operator=200, customer_a=200, customer_b=404, agent_x=200, agent_y=404),
        target=scaling_event_of_a,
    ),
    Operation(
        "POST",
        "/api/v1/alert-routes",
        expect(operator=201, customer_a=201, customer_b=404, agent_x=403, agent_y=403),
        body=alert_route_body,
    ),
    Operation(
        "GET", "/api/v1/alert-routes", expect(operator=200, customer_a=200, customer_b=200, agent_x=403, agent_y=403)
    ),
    Operation("GET", "/api/v1/alert-routes/{route_id}", ALERT_MANAGERS, target=alert_route_of_a),
    Operation(
        "PATCH",
        "/api/v1/alert-routes/{route_id}",
        ALERT_MANAGERS,
        target=alert_route_of_a,
        body=lambda world, ids: {"name": f"renamed {uuid.uuid4().hex[:8]}", "min_severity": "error"},
        probe="/alert-routes/{route_id}",
    ),
    Operation(
        "DELETE",
        "/api/v1/alert-routes/{route_id}",
        expect(operator=204, customer_a=204, customer_b=404, agent_x=403, agent_y=403),
        target=alert_route_of_a,
        probe="/alert-routes/{route_id}",
    ),
    Operation(
        "POST",
        "/api/v1/alert-routes/{route_id}/test",
        expect(operator=202, customer_a=202, customer_b=404, agent_x=403, agent_y=403),
        target=alert_route_of_a,
    ),
    Operation(
        "POST",
        "/api/v1/prometheus-sources",
        expect(operator=201, customer_a=201, customer_b=404, agent_x=403, agent_y=403),
        body=prometheus_source_body,
    ),
    Operation(
        "GET",
        "/api/v1/prometheus-sources",
        expect(operator=200, customer_a=200, customer_b=200, agent_x=403, agent_y=403),
    ),
    Operation("GET", "/api/v1/prometheus-sources/{source_id}", ALERT_MANAGERS, target=prometheus_source_of_a),
    Operation(
        "PATCH",
        "/api/v1/prometheus-sources/{source_id}",
        ALERT_MANAGERS,
        target=prometheus_source_of_a,
        body=lambda world, ids: {"step_seconds": 30, "enabled": False},
        probe="/prometheus-sources/{source_id}",
    ),
    Operation(
        "DELETE",
        "/api/v1/prometheus-sources/{source_id}",
        expect(operator=204, customer_a=204, customer_b=404, agent_x=403, agent_y=403),
        target=prometheus_source_of_a,
        probe="/prometheus-sources/{source_id}",
    ),
    Operation("GET", "/api/v1/alerts", expect(operator=200, customer_a=200, customer_b=200, agent_x=403, agent_y=403)),
    Operation("GET", "/api/v1/alerts/{alert_id}", ALERT_MANAGERS, target=alert_of_a),
    Operation(
        "POST",
        "/api/v1/alerts/{alert_id}/redeliver",
        expect(operator=409, customer_a=409, customer_b=404, agent_x=403, agent_y=403),
        target=alert_of_a,
    ),
]


class TableWorld:
    """The world the permission table runs in, with one target per operation in the state it needs.

    A refused call changes nothing (each case checks that), so its target serves the next caller; a call that
    succeeded spends the target, and the next caller gets a new one.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.targets: dict[str, Ids] = {}

    def target(self, operation: Operation) -> Ids:
        if operation.name not in self.targets:
            self.targets[operation.name] = operation.target(self.world)
        return self.targets[operation.name]

    def record_success(self, operation: Operation, response: httpx.Response) -> None:
        if operation.method == "GET":
            return
        self.targets.pop(operation.name, None)
        if operation.adopt is not None:
            operation.adopt(self.world, response.json())


@pytest.fixture(scope="module")
def table_http(api_server: Server) -> Iterator[httpx.Client]:
    """One connection for the whole table: a client per case would spend most of the time building clients."""
    with httpx.Client(base_url=api_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def table_world(api_server: Server, table_http: httpx.Client) -> TableWorld:
    operator = OptiInfraClient("", api_server.operator_key, http=table_http)
    return TableWorld(build_world(operator, api_server.operator_key))


# --- helpers --------------------------------------------------------------------------------------------------


def call(http: httpx.Client, operation: Operation, world: World, caller: str, ids: Ids) -> httpx.Response:
    key = world.key(caller)
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return http.request(
        operation.method,
        operation.path.format(**ids),
        headers=headers,
        params=operation.query(ids) if operation.query else None,
        json=operation.body(world, ids) if operation.body else None,
    )


def read_as_operator(world: World, probe: str | None, ids: Ids) -> Any:
    if not probe:
        return None
    path, _, query = probe.format(**ids).partition("?")
    return world.operator.request("GET", path, params=dict(parse_qsl(query)))


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == (code or ERROR_CODES[status])
    assert body["error"]["message"]
    return body["error"]


def disguised(payload: Any, ids: Ids, stand_ins: Ids) -> str:
    """The JSON text of `payload` with each real id replaced by its stand-in."""
    rendered = json.dumps(payload, sort_keys=True)
    for name, value in ids.items():
        rendered = rendered.replace(value, stand_ins[name])
    return rendered


# --- tests ----------------------------------------------------------------------------------------------------


def test_permission_table_covers_every_api_operation(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    published = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    tabled = [operation.name for operation in OPERATIONS]
    assert len(tabled) == len(set(tabled)), "an operation appears twice in the table"
    assert set(tabled) == published


@pytest.mark.parametrize(
    ("operation", "caller"),
    [(operation, caller) for operation in OPERATIONS for caller in CALLERS],
    ids=[f"{operation.name}-{caller}" for operation in OPERATIONS for caller in CALLERS],
)
def test_each_caller_gets_the_status_its_role_allows(
    operation: Operation, caller: str, table_world: TableWorld, table_http: httpx.Client, api_server: Server
) -> None:
    world = table_world.world
    ids = table_world.target(operation)
    before = read_as_operator(world, operation.probe, ids)
    events_before = event_count(api_server)
    keys_before = world.issued_keys()

    response = call(table_http, operation, world, caller, ids)

    expected = operation.expected[caller]
    if expected >= 400:
        assert_error(response, expected)
        assert event_count(api_server) == events_before, "a refused call wrote to the event log"
        assert read_as_operator(world, operation.probe, ids) == before, "a refused call changed the row"
    else:
        assert response.status_code == expected, response.text
        table_world.record_success(operation, response)
    for key in keys_before:
        assert key not in response.text, "a response revealed an API key issued earlier"
    if caller in {"customer_b", "agent_y"}:
        for secret in world.tenant_a_secrets():
            assert secret not in response.text, f"{caller} saw customer A's data"
    if expected >= 400 and expected != 409 and ids:
        # A refusal never reveals that the row exists: it is the answer for ids nobody has. (A 409 goes only to
        # callers who may see the row: it says the row's state forbids the change.)
        stand_ins = {name: str(uuid.uuid4()) for name in ids}
        for_nobody = call(table_http, operation, world, caller, stand_ins)
        assert for_nobody.status_code == expected
        assert disguised(response.json(), ids, stand_ins) == json.dumps(for_nobody.json(), sort_keys=True)


def test_every_wrong_key_gets_the_same_401(world: World, http: httpx.Client) -> None:
    customer_key, agent_key = world.customer_a.api_key, world.agent_x.api_key
    assert agent_key is not None
    last = customer_key[-1]
    wrong_keys = [
        "oi_op_" + secrets.token_urlsafe(32),
        "oi_cu_" + secrets.token_urlsafe(32),
        "oi_ag_" + secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        customer_key[:-1] + ("A" if last != "A" else "B"),
        customer_key + "x",
        customer_key[:-1],
        "oi_cu_" + agent_key[len("oi_ag_") :],  # another role's secret under the customer prefix
        "oi_op_" + customer_key[len("oi_cu_") :],
        "oi_cu_",
    ]
    answers = set()
    for key in wrong_keys:
        response = http.get("/api/v1/customers/me", headers={"Authorization": f"Bearer {key}"})
        answers.add(json.dumps(assert_error(response, 401, "unauthorized"), sort_keys=True))
    assert len(answers) == 1, "the answer must not tell which part of a wrong key was wrong"
    for headers in ({}, {"Authorization": f"Basic {customer_key}"}, {"Authorization": "Bearer"}):
        assert_error(http.get("/api/v1/customers/me", headers=headers), 401, "unauthorized")
    assert http.get("/api/v1/customers/me", headers={"Authorization": f"Bearer {customer_key}"}).status_code == 200


def test_other_tenant_lists_never_include_the_tenants_rows(world: World) -> None:
    world.recommendation(RecommendationStatus.COMPLETED)
    world.recommendation(RecommendationStatus.PENDING)
    tenant_a, tenant_b = world.customer_a.id, world.customer_b.id
    customer_b = world.client("customer_b")
    # B's own row, so an empty list is not the only thing that can pass.
    world.client("agent_y").create_recommendation(tenant_b, "rightsizing", "B's own", confidence_score=0.5)

    for filters in ({}, {"customer_id": tenant_a}):
        recommendations = customer_b.list_recommendations(limit=500, **filters).items
        optimizations = customer_b.list_optimizations(limit=500, **filters).items
        events = customer_b.list_events(limit=500, **filters).items
        assert all(row.customer_id == tenant_b for row in [*recommendations, *optimizations, *events])
    assert [row.title for row in customer_b.list_recommendations(limit=500).items] == ["B's own"]
    assert customer_b.list_recommendations(customer_id=tenant_a).items == []
    assert customer_b.list_events(customer_id=tenant_a).items == []
    assert customer_b.list_optimizations(customer_id=tenant_a).items == []
    assert customer_b.me().id == tenant_b
    with pytest.raises(ApiError) as refused:
        customer_b.list_customers()
    assert refused.value.status_code == 403
    # The operator sees A's rows, so the lists above were empty because of tenancy, not for lack of rows.
    assert len(world.operator.list_recommendations(customer_id=tenant_a).items) == 2
    assert world.operator.list_optimizations(customer_id=tenant_a).items
    assert world.operator.list_events(customer_id=tenant_a).items


def test_other_agent_lists_never_include_the_agents_rows(world: World) -> None:
    world.recommendation(RecommendationStatus.COMPLETED)
    agent_y = world.client("agent_y")
    assert agent_y.list_recommendations(limit=500).items == []
    assert agent_y.list_optimizations(limit=500).items == []
    assert all(event.agent_id == world.agent_y.id for event in agent_y.list_events(limit=500).items)
    assert agent_y.list_events(agent_id=world.agent_x.id).items == []
    agent_x = world.client("agent_x")
    assert len(agent_x.list_recommendations().items) == 1
    assert len(agent_x.list_optimizations().items) == 1


@pytest.mark.parametrize("status", [CustomerStatus.SUSPENDED, CustomerStatus.CHURNED])
def test_inactive_customer_can_read_but_not_change_anything(
    status: CustomerStatus, world: World, http: httpx.Client
) -> None:
    pending = world.recommendation(RecommendationStatus.PENDING)
    completed = world.recommendation(RecommendationStatus.COMPLETED)
    quality = quality_regression(world)
    regression_path = f"/api/v1/quality/regressions/{quality['regression_id']}"
    world.operator.update_customer(world.customer_a.id, status=status)
    customer_a = world.client("customer_a")
    headers = {"Authorization": f"Bearer {world.customer_a.api_key}"}

    assert customer_a.me().status == status
    listed = {str(row.id) for row in customer_a.list_recommendations().items}
    assert listed == {pending["recommendation_id"], completed["recommendation_id"]}
    assert customer_a.get_recommendation(uuid.UUID(pending["recommendation_id"])).status == "pending"
    assert customer_a.get_optimization(uuid.UUID(completed["optimization_id"])).status == "completed"
    baselines_before = customer_a.request("GET", "/quality/baselines")["items"]
    assert len(baselines_before) == 1
    regression_before = customer_a.request("GET", regression_path.removeprefix("/api/v1"))
    assert regression_before["resolved_at"] is None
    settings_before = customer_a.request("GET", "/quality/settings")
    dry_run = customer_a.request("POST", "/quality/detect", json={**window_of(world, quality), "dry_run": True})
    assert dry_run["verdict"] == "regression"
    abtest = {
        "model_name": quality["model_name"],
        "control": {"model_version": "v1"},
        "candidate": {"model_version": "v2"},
    }
    assert customer_a.request("POST", "/quality/abtest", json=abtest)["verdict"] == "inconclusive"

    refused = [
        http.post(
            f"/api/v1/recommendations/{pending['recommendation_id']}/decision",
            headers=headers,
            json={"decision": "approve"},
        ),
        http.post(
            f"/api/v1/optimizations/{completed['optimization_id']}/rollback",
            headers=headers,
            json={"reason": "changed our mind"},
        ),
        http.post(f"/api/v1/customers/{world.customer_a.id}/rotate-key", headers=headers),
        http.post("/api/v1/quality/metrics", headers=headers, json=one_record_for_a(world, quality)),
        http.post("/api/v1/quality/baselines", headers=headers, json=window_of(world, quality)),
        http.post("/api/v1/quality/detect", headers=headers, json=window_of(world, quality)),
        http.post(f"{regression_path}/resolve", headers=headers, json={"notes": "done"}),
        http.put("/api/v1/quality/settings", headers=headers, json={"alpha": 0.2}),
    ]
    for response in refused:
        error = assert_error(response, 403, "forbidden")
        assert str(status) in error["message"]
        assert error["details"]["customer_status"] == str(status)
    assert world.operator.get_recommendation(uuid.UUID(pending["recommendation_id"])).status == "pending"
    assert world.operator.get_optimization(uuid.UUID(completed["optimization_id"])).status == "completed"
    assert customer_a.me().id == world.customer_a.id, "the refused rotation must leave the key working"
    assert customer_a.request("GET", "/quality/baselines")["items"] == baselines_before
    assert customer_a.request("GET", regression_path.removeprefix("/api/v1")) == regression_before
    assert customer_a.request("GET", "/quality/settings") == settings_before


def test_other_agent_cannot_drive_the_agents_optimization(world: World, http: httpx.Client) -> None:
    queued = world.recommendation(RecommendationStatus.APPROVED)["optimization_id"]
    executing = world.recommendation(RecommendationStatus.EXECUTING)["optimization_id"]
    headers = {"Authorization": f"Bearer {world.agent_y.api_key}"}
    attempts = [
        (queued, "start", None),
        (executing, "progress", {"progress": 60}),
        (executing, "complete", {"actual_savings": "10.00"}),
        (executing, "fail", {"error": "not mine"}),
    ]
    for optimization_id, action, body in attempts:
        response = http.post(f"/api/v1/optimizations/{optimization_id}/{action}", headers=headers, json=body)
        assert_error(response, 404, "not_found")
    assert world.operator.get_optimization(uuid.UUID(queued)).status == OptimizationStatus.QUEUED
    unchanged = world.operator.get_optimization(uuid.UUID(executing))
    assert (unchanged.status, unchanged.progress) == (OptimizationStatus.EXECUTING, 0)


def count_rows(api_server: Server, table: str, customer_id: uuid.UUID) -> int:
    with api_server.engine.connect() as connection:
        statement = text(f'SELECT count(*) FROM "{table}" WHERE customer_id = :customer')
        return int(connection.execute(statement, {"customer": customer_id}).scalar_one())


def test_unrelated_agent_cannot_replace_a_baseline_and_detect_to_roll_back_the_customers_change(
    world: World, http: httpx.Client, api_server: Server
) -> None:
    """Issue 10's attack: agent Y, unrelated to A, sends degraded records for A naming A's completed optimization,
    replaces A's baseline, runs detection and asks for the rollback itself. Every step is a 404 that looks exactly
    like one for a customer nobody has, nothing is stored, and A's optimization stays completed."""
    completed = world.recommendation(RecommendationStatus.COMPLETED)
    optimization_id = completed["optimization_id"]
    quality = quality_baseline(world)
    tenant_a = world.customer_a.id
    degraded = [
        {**record, "metadata": {"optimization_id": optimization_id}}
        for record in quality_records(quality, 0.30, hours_ago=0.5)
    ]
    attack = [
        ("POST", "/api/v1/quality/metrics", {"customer_id": str(tenant_a), "records": degraded}),
        ("POST", "/api/v1/quality/baselines", window_of(world, quality)),  # replace A's baseline
        ("POST", "/api/v1/quality/detect", window_of(world, quality)),
        ("GET", "/api/v1/quality/settings", None),
        ("POST", "/api/v1/workflows/spot-migration/analyze", {"customer_id": str(tenant_a), "lookback_days": 1}),
        ("POST", f"/api/v1/optimizations/{optimization_id}/rollback", {"reason": "quality dropped"}),
        ("POST", "/api/v1/recommendations", proposal_for_a(world, {})),
        ("POST", "/api/v1/events", {"event_type": "probe.attack", "customer_id": str(tenant_a)}),
    ]
    counted = ("quality_metrics", "quality_baselines", "quality_regressions", "recommendations", "workflow_executions")
    rows_before = {table: count_rows(api_server, table, tenant_a) for table in counted}
    events_before = event_count(api_server)
    headers = {"Authorization": f"Bearer {world.agent_y.api_key}"}
    nobody = str(uuid.uuid4())

    for method, path, body in attack:
        params = {"customer_id": str(tenant_a)} if method == "GET" else None
        response = http.request(method, path, headers=headers, json=body, params=params)
        error = assert_error(response, 404, "not_found")
        # The same call for a customer (and optimization) nobody has: the same answer, ids aside.
        stand_in = json.loads(json.dumps(body).replace(str(tenant_a), nobody).replace(optimization_id, nobody))
        for_nobody = http.request(
            method,
            path.replace(optimization_id, nobody),
            headers=headers,
            json=stand_in,
            params={"customer_id": nobody} if params else None,
        )
        assert json.dumps(assert_error(for_nobody, 404, "not_found")).replace(nobody, "ID") == json.dumps(
            error
        ).replace(str(tenant_a), "ID").replace(optimization_id, "ID")

    assert world.operator.get_optimization(uuid.UUID(optimization_id)).status == OptimizationStatus.COMPLETED
    assert {table: count_rows(api_server, table, tenant_a) for table in counted} == rows_before
    assert event_count(api_server) == events_before

    # The refusals are the assignment's doing: assigned to A, Y's ingest goes through; unassigned, it is refused
    # again at once.
    ingest = ("POST", "/api/v1/quality/metrics", {"customer_id": str(tenant_a), "records": degraded[:1]})
    world.operator.assign_customer(world.agent_y.id, tenant_a)
    assert http.request(ingest[0], ingest[1], headers=headers, json=ingest[2]).status_code == 200
    world.operator.unassign_customer(world.agent_y.id, tenant_a)
    assert_error(http.request(ingest[0], ingest[1], headers=headers, json=ingest[2]), 404, "not_found")


def test_an_unassigned_agent_loses_the_customer_at_once_and_gets_it_back_when_reassigned(world: World) -> None:
    completed = world.recommendation(RecommendationStatus.COMPLETED)
    executing = world.recommendation(RecommendationStatus.EXECUTING)
    agent_x = world.client("agent_x")
    assert len(agent_x.list_recommendations().items) == 2

    unassigned = world.operator.unassign_customer(world.agent_x.id, world.customer_a.id)

    assert world.customer_a.id not in unassigned.customer_ids
    # Its own rows for A are out of its reach: not listed, not found, not actionable; the rows stay.
    assert agent_x.list_recommendations().items == []
    assert agent_x.list_optimizations().items == []
    for call in (
        lambda: agent_x.get_recommendation(uuid.UUID(completed["recommendation_id"])),
        lambda: agent_x.report_progress(uuid.UUID(executing["optimization_id"]), 70),
        lambda: agent_x.create_recommendation(world.customer_a.id, "rightsizing", "More", confidence_score=0.5),
    ):
        with pytest.raises(ApiError) as refused:
            call()
        assert refused.value.status_code == 404
    assert world.operator.get_optimization(uuid.UUID(executing["optimization_id"])).progress == 0
    # The customer sees in its log that the agent was taken away; assigning it again restores its reach.
    logged = world.client("customer_a").list_events(event_type="agent.customer_unassigned").items
    assert [event.agent_id for event in logged] == [world.agent_x.id]
    world.operator.assign_customer(world.agent_x.id, world.customer_a.id)
    assert len(agent_x.list_recommendations().items) == 2
    assert agent_x.report_progress(uuid.UUID(executing["optimization_id"]), 70).progress == 70


def test_other_agent_cannot_heartbeat_or_re_register_as_the_agent(world: World, http: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {world.agent_y.api_key}"}
    heartbeat = http.post(f"/api/v1/agents/{world.agent_x.id}/heartbeat", headers=headers, json={"status": "failed"})
    assert_error(heartbeat, 403, "forbidden")
    register = http.post(
        "/api/v1/agents",
        headers=headers,
        json={"type": "cost", "name": world.agent_x.name, "version": "6.6.6", "endpoint": "http://evil.example"},
    )
    assert_error(register, 403, "forbidden")
    agent_x = world.operator.get_agent(world.agent_x.id)
    assert (agent_x.status, agent_x.last_heartbeat, agent_x.version, agent_x.endpoint) == (
        world.agent_x.status,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("rotated_by", ["operator", "customer_a"])
def test_rotated_customer_key_replaces_the_old_one(rotated_by: str, world: World, http: httpx.Client) -> None:
    old_key = world.customer_a.api_key
    rotated = world.client(rotated_by).rotate_customer_key(world.customer_a.id)
    assert rotated.api_key != old_key
    assert rotated.api_key.startswith("oi_cu_")
    old = http.get("/api/v1/customers/me", headers={"Authorization": f"Bearer {old_key}"})
    assert_error(old, 401, "unauthorized")
    new = http.get("/api/v1/customers/me", headers={"Authorization": f"Bearer {rotated.api_key}"})
    assert new.status_code == 200
    assert new.json()["id"] == str(world.customer_a.id)


def test_rotated_agent_key_replaces_the_old_one(world: World, http: httpx.Client) -> None:
    old_key = world.agent_x.api_key
    rotated = world.operator.rotate_agent_key(world.agent_x.id)
    assert rotated.api_key is not None
    assert rotated.api_key != old_key
    assert rotated.api_key.startswith("oi_ag_")
    path = f"/api/v1/agents/{world.agent_x.id}/heartbeat"
    old = http.post(path, headers={"Authorization": f"Bearer {old_key}"}, json={"status": "healthy"})
    assert_error(old, 401, "unauthorized")
    new = http.post(path, headers={"Authorization": f"Bearer {rotated.api_key}"}, json={"status": "healthy"})
    assert new.status_code == 200
    assert new.json()["status"] == "healthy"


def test_keys_are_stored_only_as_sha256_digests(world: World, api_server: Server) -> None:
    world.recommendation(RecommendationStatus.COMPLETED)
    rotated_customer_key = world.operator.rotate_customer_key(world.customer_b.id).api_key
    rotated_agent_key = world.operator.rotate_agent_key(world.agent_y.id).api_key
    assert rotated_agent_key is not None
    customer_key, agent_key = world.customer_a.api_key, world.agent_x.api_key
    assert agent_key is not None
    with api_server.engine.connect() as connection:
        stored_customer = connection.execute(
            text("SELECT api_key FROM customers WHERE id = :id"), {"id": world.customer_a.id}
        ).scalar_one()
        stored_agent = connection.execute(
            text("SELECT api_key_digest FROM agents WHERE id = :id"), {"id": world.agent_x.id}
        ).scalar_one()
        assert stored_customer == hashlib.sha256(customer_key.encode()).hexdigest()
        assert stored_agent == hashlib.sha256(agent_key.encode()).hexdigest()
        tables = list(
            connection.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )
            ).scalars()
        )
        assert {"customers", "agents", "events"} <= set(tables)
        for key in (customer_key, agent_key, rotated_customer_key, rotated_agent_key, api_server.operator_key):
            secret_part = key.split("_", 2)[2]  # without the role prefix, in case only that was dropped
            for table in tables:
                found = connection.execute(
                    text(f'SELECT count(*) FROM "{table}" AS whole_row WHERE strpos(whole_row::text, :secret) > 0'),
                    {"secret": secret_part},
                ).scalar_one()
                assert found == 0, f"a raw API key is stored in {table}"
