"""Bad input over HTTP: every refusal is a JSON error in one shape, and no request, however malformed, gets a 5xx.

All requests go through one client whose response hook fails the test on any 5xx, so every case here also checks
that the server never answers bad input with a server error.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from optiinfra.client import OptiInfraClient
from optiinfra.enums import AgentType, OptimizationStatus
from optiinfra.quality.scoring import DEFAULT_WEIGHTS
from tests.api.conftest import Server
from tests.api.conftest import settled_event_count as event_count

BODY_LIMIT = 256 * 1024  # the test server's max_body_bytes (tests/api/conftest.py)


def _refuse_server_errors(response: httpx.Response) -> None:
    if response.status_code >= 500:
        response.read()
        request = response.request
        raise AssertionError(f"{request.method} {request.url} answered {response.status_code}: {response.text[:300]}")


@pytest.fixture(scope="module")
def client(api_server: Server) -> Iterator[httpx.Client]:
    """The raw HTTP client of this module: any 5xx answer fails the test that caused it."""
    # No keep-alive: after an unhandled error the server drops the connection, and the next case must not
    # inherit that failure.
    with httpx.Client(
        base_url=api_server.base_url,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
        event_hooks={"response": [_refuse_server_errors]},
    ) as http_client:
        yield http_client


@dataclass
class World:
    """One customer, one agent, a pending recommendation, an executing optimization and an open quality regression
    of theirs."""

    keys: dict[str, str]
    customer_id: str
    agent_id: str
    recommendation_id: str
    optimization_id: str
    regression_id: str
    scaling_event_id: str
    workflow_id: str
    route_id: str
    source_id: str

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    @property
    def ids(self) -> dict[str, str]:
        return {
            "customer_id": self.customer_id,
            "agent_id": self.agent_id,
            "recommendation_id": self.recommendation_id,
            "optimization_id": self.optimization_id,
            "regression_id": self.regression_id,
            "scaling_event_id": self.scaling_event_id,
            "workflow_id": self.workflow_id,
            "route_id": self.route_id,
            "source_id": self.source_id,
            "config_key": "validation.limit",
            "resource": "validation-gpu-cluster",
            "capability_name": VALIDATION_CAPABILITY,
        }


@pytest.fixture(scope="module")
def world(api_server: Server, client: httpx.Client) -> World:
    operator = OptiInfraClient("", api_server.operator_key, http=client)
    suffix = uuid.uuid4().hex[:10]
    customer = operator.create_customer(f"Validation {suffix}", f"validation-{suffix}@tenant.example")
    agent = operator.register_agent(
        AgentType.COST, f"validation-{suffix}", capabilities=[VALIDATION_CAPABILITY], customer_ids=[customer.id]
    )
    assert agent.api_key is not None
    as_agent, as_customer = operator.with_key(agent.api_key), operator.with_key(customer.api_key)
    pending = as_agent.create_recommendation(customer.id, "rightsizing", "Pending", confidence_score=0.5)
    executing = as_agent.create_recommendation(customer.id, "rightsizing", "Executing", confidence_score=0.5)
    decision = as_customer.approve(executing.id)
    assert decision.optimization is not None
    as_agent.start_optimization(decision.optimization.id)
    # Quality: a baseline from healthy metrics (hours ago, before the optimization started), then a much worse
    # window, detected as an open regression.
    start = datetime.now(UTC) - timedelta(hours=3)
    for name, overall, offset in (("healthy", 0.85, 0), ("degraded", 0.5, 60)):
        records = [
            {
                "request_id": f"{name}-{index}",
                "model_name": QUALITY_MODEL,
                "model_version": "v1",
                "timestamp": (start + timedelta(minutes=offset, seconds=index)).isoformat(),
                "overall_quality_score": overall + (index % 5) / 100,
            }
            for index in range(60)
        ]
        as_agent.request("POST", "/quality/metrics", json={"customer_id": str(customer.id), "records": records})
        if name == "healthy":
            as_customer.request("POST", "/quality/baselines", json=QUALITY_WINDOW)
    report = as_customer.request("POST", "/quality/detect", json=QUALITY_WINDOW)
    assert report["verdict"] == "regression", report
    scaling = as_agent.request("POST", "/resources/scaling-events", json=scaling_event(str(customer.id)))
    run = as_agent.request("POST", "/workflows/spot-migration/analyze", json={"customer_id": str(customer.id)})
    route = as_customer.request("POST", "/alert-routes", json=ALERT_ROUTE)
    source = as_customer.request("POST", "/prometheus-sources", json=PROMETHEUS_SOURCE)
    return World(
        keys={"operator": api_server.operator_key, "customer": customer.api_key, "agent": agent.api_key},
        customer_id=str(customer.id),
        agent_id=str(agent.id),
        recommendation_id=str(pending.id),
        optimization_id=str(decision.optimization.id),
        regression_id=report["regressions"][0]["id"],
        scaling_event_id=scaling["id"],
        workflow_id=run["id"],
        route_id=route["id"],
        source_id=source["id"],
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the JSON error shape with this status and code; returns the error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert body["error"]["code"] == code
    return body["error"]


def assert_invalid(response: httpx.Response, *location: str) -> list[dict[str, Any]]:
    """422 invalid_input; when `location` is given, every problem reported is at or under it."""
    problems: list[dict[str, Any]] = assert_error(response, 422, "invalid_input")["details"].get("problems", [])
    if location:
        assert problems, response.text
        for problem in problems:
            assert problem["location"][: len(location)] == list(location), problems
    return problems


# --- every operation that takes a body, with a valid body and the role that may send it -----------------------


@dataclass(frozen=True)
class BodyEndpoint:
    method: str
    path: str
    role: str
    valid_body: Callable[[World], dict[str, Any]]

    def url(self, world: World) -> str:
        return self.path.format(**world.ids)

    def send(self, client: httpx.Client, world: World, **options: Any) -> httpx.Response:
        headers = {**world.headers(self.role), **options.pop("headers", {})}
        return client.request(self.method, self.url(world), headers=headers, **options)

    def send_raw(self, client: httpx.Client, world: World, content: bytes | str) -> httpx.Response:
        return self.send(client, world, content=content, headers={"Content-Type": "application/json"})


QUALITY_MODEL = "validation-model"
# A host name that never resolves: alerts to it fail at once and nothing leaves the machine.
PROMETHEUS_SOURCE = {"name": "validation", "base_url": "https://prometheus.invalid"}
ALERT_ROUTE = {"name": "validation", "destination": "slack", "url": "https://hooks.invalid/services/validation"}


QUALITY_WINDOW = {"model_name": QUALITY_MODEL, "model_version": "v1", "window": {"last_n": 60}}
VALIDATION_CAPABILITY = "validation-spot"


def scaling_event(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "event_type": "scale_down",
        "trigger_reason": "GPU utilization below 20 % for an hour",
        "before_state": {"instance_count": 3},
        "after_state": {"instance_count": 2},
        "success": True,
        "executed_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }


def agent_metrics(world: World) -> dict[str, Any]:
    return {
        "metrics": [{"metric_name": "queue_depth", "metric_value": 4, "recorded_at": datetime.now(UTC).isoformat()}]
    }


def resource_metrics(world: World) -> dict[str, Any]:
    sample = {
        "resource_type": "cpu",
        "instance_id": "i-validation",
        "metric_name": "utilization",
        "metric_value": 42.0,
        "unit": "percent",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return {"customer_id": world.customer_id, "metrics": [sample]}


def quality_record(world: World) -> dict[str, Any]:
    return {
        "customer_id": world.customer_id,
        "records": [
            {
                "request_id": f"valid-{uuid.uuid4().hex}",
                "model_name": QUALITY_MODEL,
                "model_version": "v1",
                "timestamp": datetime.now(UTC).isoformat(),
                "relevance_score": 0.9,
            }
        ],
    }


BODY_ENDPOINTS = {
    "create customer": BodyEndpoint(
        "POST", "/api/v1/customers", "operator", lambda w: {"name": "Acme", "email": "acme@tenant.example"}
    ),
    "update customer": BodyEndpoint(
        "PATCH", "/api/v1/customers/{customer_id}", "operator", lambda w: {"plan": "startup"}
    ),
    "register agent": BodyEndpoint(
        "POST", "/api/v1/agents", "operator", lambda w: {"type": "cost", "name": "cost-validation"}
    ),
    "heartbeat": BodyEndpoint("POST", "/api/v1/agents/{agent_id}/heartbeat", "agent", lambda w: {"status": "healthy"}),
    "assign customer": BodyEndpoint(
        "POST", "/api/v1/agents/{agent_id}/customers", "operator", lambda w: {"customer_id": w.customer_id}
    ),
    "append event": BodyEndpoint("POST", "/api/v1/events", "agent", lambda w: {"event_type": "probe.checked"}),
    "create recommendation": BodyEndpoint(
        "POST",
        "/api/v1/recommendations",
        "agent",
        lambda w: {"customer_id": w.customer_id, "type": "rightsizing", "title": "Shrink", "confidence_score": 0.5},
    ),
    "decide": BodyEndpoint(
        "POST",
        "/api/v1/recommendations/{recommendation_id}/decision",
        "customer",
        lambda w: {"decision": "approve"},
    ),
    "progress": BodyEndpoint(
        "POST", "/api/v1/optimizations/{optimization_id}/progress", "agent", lambda w: {"progress": 10}
    ),
    "complete": BodyEndpoint(
        "POST", "/api/v1/optimizations/{optimization_id}/complete", "agent", lambda w: {"actual_savings": "1.00"}
    ),
    "fail": BodyEndpoint("POST", "/api/v1/optimizations/{optimization_id}/fail", "agent", lambda w: {"error": "x"}),
    "rollback": BodyEndpoint(
        "POST", "/api/v1/optimizations/{optimization_id}/rollback", "customer", lambda w: {"reason": "x"}
    ),
    "ingest quality metrics": BodyEndpoint("POST", "/api/v1/quality/metrics", "agent", quality_record),
    "establish baseline": BodyEndpoint("POST", "/api/v1/quality/baselines", "customer", lambda w: QUALITY_WINDOW),
    "delete quality records": BodyEndpoint(
        "POST", "/api/v1/quality/records/deletion", "operator", lambda w: {"customer_id": w.customer_id}
    ),
    "detect": BodyEndpoint("POST", "/api/v1/quality/detect", "customer", lambda w: {**QUALITY_WINDOW, "dry_run": True}),
    "resolve regression": BodyEndpoint(
        "POST", "/api/v1/quality/regressions/{regression_id}/resolve", "customer", lambda w: {"notes": "fixed"}
    ),
    "ab test": BodyEndpoint(
        "POST",
        "/api/v1/quality/abtest",
        "customer",
        lambda w: {
            "model_name": QUALITY_MODEL,
            "control": {"model_version": "v1"},
            "candidate": {"model_version": "v2"},
        },
    ),
    "update quality settings": BodyEndpoint("PUT", "/api/v1/quality/settings", "customer", lambda w: {"alpha": 0.01}),
    "update otlp settings": BodyEndpoint(
        "PUT", "/api/v1/otlp/settings", "customer", lambda w: {"route_from": ["optiinfra.route", "span_name"]}
    ),
    "set config": BodyEndpoint(
        "PUT",
        "/api/v1/agents/{agent_id}/configs/{config_key}",
        "agent",
        lambda w: {"value": "4", "config_type": "integer"},
    ),
    "update state": BodyEndpoint(
        "PATCH", "/api/v1/agents/{agent_id}/state", "agent", lambda w: {"current_status": "busy"}
    ),
    "acquire lock": BodyEndpoint(
        "POST", "/api/v1/agents/{agent_id}/locks/{resource}", "agent", lambda w: {"purpose": "validation"}
    ),
    "update capability": BodyEndpoint(
        "PATCH", "/api/v1/agents/{agent_id}/capabilities/{capability_name}", "agent", lambda w: {"enabled": True}
    ),
    "ingest agent metrics": BodyEndpoint("POST", "/api/v1/agents/{agent_id}/metrics", "agent", agent_metrics),
    "ingest resource metrics": BodyEndpoint("POST", "/api/v1/resources/metrics", "agent", resource_metrics),
    "record scaling event": BodyEndpoint(
        "POST", "/api/v1/resources/scaling-events", "agent", lambda w: scaling_event(w.customer_id)
    ),
    "analyze spot migration": BodyEndpoint(
        "POST", "/api/v1/workflows/spot-migration/analyze", "operator", lambda w: {"customer_id": w.customer_id}
    ),
    "roll out spot migration": BodyEndpoint(
        "POST", "/api/v1/workflows/spot-migration/rollout", "operator", lambda w: {"optimization_id": w.optimization_id}
    ),
    "decide scaling": BodyEndpoint(
        "POST", "/api/v1/workflows/scaling-decision", "operator", lambda w: {"customer_id": w.customer_id}
    ),
    "resume workflow": BodyEndpoint(
        "POST", "/api/v1/workflows/{workflow_id}/resume", "operator", lambda w: {"note": "looks fine"}
    ),
    "create alert route": BodyEndpoint("POST", "/api/v1/alert-routes", "customer", lambda w: ALERT_ROUTE),
    "update alert route": BodyEndpoint(
        "PATCH", "/api/v1/alert-routes/{route_id}", "customer", lambda w: {"min_severity": "warning"}
    ),
    "create prometheus source": BodyEndpoint(
        "POST",
        "/api/v1/prometheus-sources",
        "customer",
        lambda w: {**PROMETHEUS_SOURCE, "name": f"v-{uuid.uuid4().hex[:8]}"},
    ),
    "update prometheus source": BodyEndpoint(
        "PATCH", "/api/v1/prometheus-sources/{source_id}", "customer", lambda w: {"step_seconds": 30}
    ),
}

LIST_ENDPOINTS = {
    "/api/v1/customers": "operator",
    "/api/v1/agents": "operator",
    "/api/v1/events": "operator",
    "/api/v1/recommendations": "operator",
    "/api/v1/optimizations": "operator",
    "/api/v1/quality/baselines": "operator",
    "/api/v1/quality/regressions": "operator",
    "/api/v1/resources/scaling-events": "operator",
    "/api/v1/workflows": "operator",
}


def with_raw_value(body: dict[str, Any], field: str, raw: str) -> str:
    """The body as JSON text with `field` set to `raw`, verbatim (for NaN, Infinity and other non-JSON)."""
    placeholder = f"__raw_{uuid.uuid4().hex}__"
    return json.dumps({**body, field: placeholder}).replace(json.dumps(placeholder), raw)


# --- unknown fields and wrong types -------------------------------------------------------------------------


def test_every_operation_with_a_body_is_listed_here(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    # /v1/traces and /v1/logs take OTLP bodies, whose rules OTLP sets (unknown fields are ignored): tests/otlp.
    with_body = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        if path.startswith("/api/")
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert {f"{endpoint.method} {endpoint.path}" for endpoint in BODY_ENDPOINTS.values()} == with_body


@pytest.mark.parametrize("name", BODY_ENDPOINTS)
def test_unknown_field_is_refused(name: str, client: httpx.Client, world: World, api_server: Server) -> None:
    endpoint = BODY_ENDPOINTS[name]
    events_before = event_count(api_server)
    response = endpoint.send(client, world, json={**endpoint.valid_body(world), "surprise": 1})
    problems = assert_invalid(response)
    # Exactly one problem, the unknown field: the rest of the body was valid.
    assert [(problem["location"], problem["type"]) for problem in problems] == [
        (["body", "surprise"], "extra_forbidden")
    ]
    assert event_count(api_server) == events_before


WRONG_TYPES = [
    ("create customer", "name", 123),
    ("create customer", "email", "not-an-email"),
    ("create customer", "plan", "platinum"),
    ("create customer", "metadata", [1, 2]),
    ("update customer", "status", "deleted"),
    ("update customer", "name", ""),
    ("register agent", "type", "quantum"),
    ("register agent", "name", "has spaces"),
    ("register agent", "capabilities", "spot"),
    ("register agent", "heartbeat_interval_seconds", "often"),
    ("register agent", "heartbeat_interval_seconds", 0),
    ("register agent", "customer_ids", "everyone"),
    ("register agent", "endpoint", "http://127.0.0.1:8101/internal#"),
    ("assign customer", "customer_id", "acme"),
    ("heartbeat", "status", "sleepy"),
    ("heartbeat", "metadata", "up"),
    ("append event", "event_type", "Not Valid"),
    ("append event", "severity", "loud"),
    ("append event", "customer_id", "not-a-uuid"),
    ("append event", "data", [1]),
    ("create recommendation", "customer_id", 42),
    ("create recommendation", "type", "Has-Caps"),
    ("create recommendation", "confidence_score", "high"),
    ("create recommendation", "priority", "urgent"),
    ("create recommendation", "title", ["Shrink"]),
    ("create recommendation", "data", "none"),
    ("decide", "decision", "maybe"),
    ("decide", "comment", {"text": "ok"}),
    ("progress", "progress", "half"),
    ("progress", "progress", 50.5),
    ("progress", "result", [1]),
    ("complete", "actual_savings", "lots"),
    ("complete", "result", "done"),
    ("fail", "error", None),
    ("fail", "error", ""),
    ("rollback", "reason", ["x"]),
    ("rollback", "reason", None),
    ("ingest quality metrics", "records", []),
    ("ingest quality metrics", "customer_id", "nobody"),
    ("establish baseline", "model_name", ""),
    ("establish baseline", "model_version", "v" * 51),
    ("establish baseline", "window", {"last_n": 0}),
    ("establish baseline", "window", {"last_n": 10, "start": "2025-01-01T00:00:00Z"}),
    ("establish baseline", "window", {"start": "2025-01-01T00:00:00"}),
    ("establish baseline", "valid_until", "tomorrow"),
    ("detect", "dry_run", "maybe"),
    ("detect", "window", {"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}),
    ("resolve regression", "notes", ""),
    ("resolve regression", "notes", None),
    ("ab test", "control", {}),
    ("ab test", "candidate", {"model_version": "v2", "metadata_key": "arm", "metadata_value": "b"}),
    ("ab test", "candidate", {"metadata_key": "not a key", "metadata_value": "b"}),
    ("ab test", "start", "last week"),
    ("update quality settings", "alpha", 0.9),
    ("update quality settings", "min_samples", 1),
    ("update quality settings", "weights", {"relevance": 1.0}),
    ("update quality settings", "weights", {**dict.fromkeys(DEFAULT_WEIGHTS, 0.2), "relevance": -1.0}),
    ("update quality settings", "policy", {"high": "explode"}),
    ("update quality settings", "severity_steps", [3.0, 2.0, 1.0]),
    ("update quality settings", "floors", {"quality_drop_abs": 0}),
    ("set config", "config_type", "decimal"),
    ("set config", "value", 4),
    ("set config", "value", "four"),
    ("set config", "description", ["x"]),
    ("update state", "current_status", "asleep"),
    ("update state", "active_workflows", ["not-a-uuid"]),
    ("update state", "resource_usage", [1]),
    ("update state", "current_workflow_id", "w-1"),
    ("acquire lock", "purpose", "x" * 501),
    ("update capability", "enabled", "maybe"),
    ("update capability", "capability_version", "has space"),
    ("update capability", "config", "on"),
    ("ingest agent metrics", "metrics", []),
    ("ingest agent metrics", "metrics", "lots"),
    ("ingest resource metrics", "metrics", []),
    ("ingest resource metrics", "customer_id", "nobody"),
    ("record scaling event", "event_type", "scale_sideways"),
    ("record scaling event", "trigger_reason", ""),
    ("record scaling event", "before_state", None),
    ("record scaling event", "success", "perhaps"),
    ("record scaling event", "executed_at", "2025-01-01T00:00:00"),
    ("record scaling event", "executed_at", "2999-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("name", "field", "value"), WRONG_TYPES)
def test_wrong_type_is_refused_at_its_field(
    name: str, field: str, value: Any, client: httpx.Client, world: World
) -> None:
    endpoint = BODY_ENDPOINTS[name]
    response = endpoint.send(client, world, json={**endpoint.valid_body(world), field: value})
    assert_invalid(response, "body", field)


@pytest.mark.parametrize("name", ["create recommendation", "append event", "progress", "rollback"])
def test_missing_body_is_refused(name: str, client: httpx.Client, world: World) -> None:
    endpoint = BODY_ENDPOINTS[name]
    assert_invalid(endpoint.send_raw(client, world, b""), "body")


@pytest.mark.parametrize("content", [b"[]", b'"a string"', b"null", b"42", b"true"])
def test_body_that_is_not_an_object_is_refused(content: bytes, client: httpx.Client, world: World) -> None:
    assert_invalid(BODY_ENDPOINTS["create recommendation"].send_raw(client, world, content), "body")


# --- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "1.0000001", "NaN", "Infinity", "-Infinity", "1e400"])
def test_confidence_outside_zero_to_one_is_refused(raw: str, client: httpx.Client, world: World) -> None:
    endpoint = BODY_ENDPOINTS["create recommendation"]
    content = with_raw_value(endpoint.valid_body(world), "confidence_score", raw)
    assert_invalid(endpoint.send_raw(client, world, content), "body", "confidence_score")


@pytest.mark.parametrize("raw", ["12.345", '"12.345"', "1e12", '"1000000000000"', "100000000.00", "NaN", '"NaN"'])
@pytest.mark.parametrize("field", ["estimated_savings", "estimated_improvement"])
def test_amount_beyond_numeric_10_2_is_refused(raw: str, field: str, client: httpx.Client, world: World) -> None:
    endpoint = BODY_ENDPOINTS["create recommendation"]
    content = with_raw_value(endpoint.valid_body(world), field, raw)
    assert_invalid(endpoint.send_raw(client, world, content), "body", field)


@pytest.mark.parametrize("raw", ["0.001", "-99999999.999", "1e12"])
def test_actual_savings_beyond_numeric_10_2_is_refused(raw: str, client: httpx.Client, world: World) -> None:
    endpoint = BODY_ENDPOINTS["complete"]
    content = with_raw_value(endpoint.valid_body(world), "actual_savings", raw)
    assert_invalid(endpoint.send_raw(client, world, content), "body", "actual_savings")


def test_amounts_at_the_limits_of_numeric_10_2_are_kept_exactly(client: httpx.Client, world: World) -> None:
    endpoint = BODY_ENDPOINTS["create recommendation"]
    body = {**endpoint.valid_body(world), "estimated_savings": "99999999.99", "estimated_improvement": "-0.01"}
    response = endpoint.send(client, world, json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["estimated_savings"], response.json()["estimated_improvement"]) == ("99999999.99", "-0.01")


@pytest.mark.parametrize("progress", [101, -1, 1000, "NaN"])
def test_progress_outside_zero_to_hundred_is_refused(
    progress: int | str, client: httpx.Client, world: World, operator: OptiInfraClient
) -> None:
    endpoint = BODY_ENDPOINTS["progress"]
    content = with_raw_value(endpoint.valid_body(world), "progress", str(progress))
    assert_invalid(endpoint.send_raw(client, world, content), "body", "progress")
    optimization = operator.get_optimization(uuid.UUID(world.optimization_id))
    assert (optimization.status, optimization.progress) == (OptimizationStatus.EXECUTING, 0)


# --- malformed bodies ---------------------------------------------------------------------------------------

MALFORMED_JSON = {
    "truncated object": b'{"event_type": "probe.checked", "da',
    "truncated string": b'{"event_type": "probe.che',
    "missing brace": b'{"event_type": "probe.checked"',
    "trailing comma": b'{"event_type": "probe.checked",}',
    "single quotes": b"{'event_type': 'probe.checked'}",
    "not json": b"event_type=probe.checked",
    "two documents": b'{"event_type": "a"}{"event_type": "b"}',
}


@pytest.mark.parametrize("content", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
def test_malformed_json_is_a_422_json_error(
    content: bytes, client: httpx.Client, world: World, api_server: Server
) -> None:
    events_before = event_count(api_server)
    problems = assert_invalid(BODY_ENDPOINTS["append event"].send_raw(client, world, content), "body")
    assert [problem["type"] for problem in problems] == ["json_invalid"]
    assert event_count(api_server) == events_before


@pytest.mark.parametrize(
    "content",
    [b'{"event_type": "\xff\xfe"}', b'{"event_type": "probe.checked", "data": {"k": "\xc3\x28"}}', b"\xed\xa0\x80"],
    ids=["invalid bytes", "invalid sequence", "encoded surrogate"],
)
def test_invalid_utf8_is_a_4xx_json_error(content: bytes, client: httpx.Client, world: World) -> None:
    response = BODY_ENDPOINTS["append event"].send_raw(client, world, content)
    # Either answer is honest: the body cannot be read (400) or is not valid JSON (422).
    codes = {400: "bad_request", 422: "invalid_input"}
    assert response.status_code in codes, response.text
    assert_error(response, response.status_code, codes[response.status_code])


# --- size limit ---------------------------------------------------------------------------------------------


def event_of_size(size: int) -> bytes:
    """A valid event body of exactly `size` bytes: a 32 KiB `data` field (under the field limit), then whitespace."""
    skeleton = json.dumps({"event_type": "probe.sized", "data": {"blob": "a" * 32 * 1024}}).encode()
    padded = skeleton + b" " * (size - len(skeleton))
    assert len(padded) == size
    return padded


def in_chunks(content: bytes, chunk: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(content), chunk):
        yield content[start : start + chunk]


def test_body_at_the_limit_is_accepted(client: httpx.Client, world: World) -> None:
    response = BODY_ENDPOINTS["append event"].send_raw(client, world, event_of_size(BODY_LIMIT))
    assert response.status_code == 201, response.text


def test_body_over_the_limit_is_413_by_content_length(client: httpx.Client, world: World, api_server: Server) -> None:
    events_before = event_count(api_server)
    response = BODY_ENDPOINTS["append event"].send_raw(client, world, event_of_size(BODY_LIMIT + 1))
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == BODY_LIMIT
    assert event_count(api_server) == events_before


def test_body_over_the_limit_is_413_when_chunked(client: httpx.Client, world: World, api_server: Server) -> None:
    events_before = event_count(api_server)
    endpoint = BODY_ENDPOINTS["append event"]
    # A generator body is sent with Transfer-Encoding: chunked and no Content-Length.
    response = endpoint.send(
        client,
        world,
        content=in_chunks(event_of_size(BODY_LIMIT + 64 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == BODY_LIMIT
    assert event_count(api_server) == events_before


def test_chunked_body_under_the_limit_is_accepted(client: httpx.Client, world: World) -> None:
    response = BODY_ENDPOINTS["append event"].send(
        client, world, content=in_chunks(event_of_size(64 * 1024)), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


# --- values the database cannot store -----------------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity"]


@pytest.mark.parametrize("raw", NON_FINITE)
@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("create recommendation", "data"),
        ("create customer", "metadata"),
        ("append event", "data"),
        ("heartbeat", "metadata"),
        ("progress", "result"),
        ("ingest quality metrics", "records"),
        ("update quality settings", "weights"),
        ("update state", "metadata"),
        ("update capability", "config"),
        ("ingest agent metrics", "metrics"),
        ("ingest resource metrics", "metrics"),
        ("record scaling event", "before_state"),
    ],
)
def test_non_finite_number_inside_free_form_json_is_refused(
    raw: str, name: str, field: str, client: httpx.Client, world: World, api_server: Server
) -> None:
    endpoint = BODY_ENDPOINTS[name]
    body = endpoint.valid_body(world)
    if name == "create customer":
        body["email"] = f"nan-{uuid.uuid4().hex[:8]}@tenant.example"
    content = json.dumps({**body, field: {"score": "__value__"}}).replace('"__value__"', raw)
    events_before = event_count(api_server)
    assert_invalid(endpoint.send_raw(client, world, content), "body", field)
    assert event_count(api_server) == events_before


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("create recommendation", "title", "Shrink\u0000now"),
        ("create recommendation", "data", {"note": "a\u0000b"}),
        ("create recommendation", "data", {"a\u0000b": 1}),
        ("create customer", "name", "Acme\u0000"),
        ("append event", "data", {"note": "\u0000"}),
        ("fail", "error", "disk\u0000full"),
        ("ingest quality metrics", "records", [{"request_id": "a\u0000b", "model_name": "m", "model_version": "v"}]),
        ("establish baseline", "model_name", "model\u0000"),
        ("resolve regression", "notes", "fixed\u0000"),
        ("set config", "value", "a\u0000b"),
        ("acquire lock", "purpose", "phase\u00001"),
        ("record scaling event", "trigger_reason", "up\u0000"),
    ],
)
def test_nul_character_in_body_is_refused(
    name: str, field: str, value: Any, client: httpx.Client, world: World, api_server: Server
) -> None:
    # PostgreSQL can store U+0000 neither in text nor in jsonb.
    endpoint = BODY_ENDPOINTS[name]
    body = {**endpoint.valid_body(world), field: value}
    if name == "create customer":
        body["email"] = f"nul-{uuid.uuid4().hex[:8]}@tenant.example"
    events_before = event_count(api_server)
    assert_invalid(endpoint.send(client, world, json=body), "body", field)
    assert event_count(api_server) == events_before


@pytest.mark.parametrize(
    ("path", "name"),
    [("/api/v1/events", "event_type"), ("/api/v1/recommendations", "type")],
)
def test_nul_character_in_filter_is_refused_or_matches_nothing(
    path: str, name: str, client: httpx.Client, world: World
) -> None:
    response = client.get(path, headers=world.headers("operator"), params={name: "x\u0000y"})
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert_invalid(response, "query", name)


def test_deeply_nested_data_is_stored_or_refused_but_never_a_server_error(
    client: httpx.Client, world: World, api_server: Server
) -> None:
    depth = 300
    content = f'{{"event_type": "probe.nested", "data": {{"tree": {"[" * depth}{"]" * depth}}}}}'
    events_before = event_count(api_server)
    response = BODY_ENDPOINTS["append event"].send_raw(client, world, content)
    if response.status_code == 201:
        assert event_count(api_server) == events_before + 1
    else:
        assert_invalid(response, "body", "data")
        assert event_count(api_server) == events_before


# --- paths and query strings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "parameter"),
    [
        ("GET", "/api/v1/customers/not-a-uuid", "operator", None, "customer_id"),
        ("PATCH", "/api/v1/customers/123", "operator", {"plan": "startup"}, "customer_id"),
        ("GET", "/api/v1/agents/agent-x", "operator", None, "agent_id"),
        ("POST", "/api/v1/agents/0/heartbeat", "agent", {"status": "healthy"}, "agent_id"),
        ("GET", "/api/v1/recommendations/%27%20OR%201=1", "operator", None, "recommendation_id"),
        ("POST", "/api/v1/recommendations/xyz/decision", "customer", {"decision": "approve"}, "recommendation_id"),
        ("GET", "/api/v1/optimizations/00000000-0000-0000-0000", "operator", None, "optimization_id"),
        ("POST", "/api/v1/optimizations/zzz/start", "agent", None, "optimization_id"),
        ("POST", "/api/v1/optimizations/zzz/rollback", "customer", {"reason": "x"}, "optimization_id"),
        ("GET", "/api/v1/agents/not-a-uuid/state", "operator", None, "agent_id"),
        ("POST", "/api/v1/agents/42/locks/gpu", "agent", None, "agent_id"),
        ("GET", "/api/v1/resources/scaling-events/xyz", "operator", None, "scaling_event_id"),
    ],
)
def test_bad_uuid_in_path_is_refused(
    method: str,
    path: str,
    role: str,
    body: dict[str, Any] | None,
    parameter: str,
    client: httpx.Client,
    world: World,
) -> None:
    response = client.request(method, path, headers=world.headers(role), json=body)
    assert_invalid(response, "path", parameter)


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = {
    "not base64": "!!!",
    "not a cursor": _cursor("garbage"),
    "bad uuid": _cursor("2024-01-01T00:00:00+00:00|not-a-uuid"),
    "bad time": _cursor(f"yesterday|{uuid.uuid4()}"),
    "naive time": _cursor(f"2024-01-01T00:00:00|{uuid.uuid4()}"),
    "three parts": _cursor(f"2024-01-01T00:00:00+00:00|{uuid.uuid4()}|x"),
    "not ascii": "é",
    "too long": "a" * 201,
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_bad_cursor_is_refused(path: str, cursor: str, client: httpx.Client, world: World) -> None:
    response = client.get(path, headers=world.headers(LIST_ENDPOINTS[path]), params={"cursor": cursor})
    assert_invalid(response)


@pytest.mark.parametrize("limit", ["0", "-1", "501", "100000", "ten", "1.5"])
@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_limit_outside_one_to_500_is_refused(path: str, limit: str, client: httpx.Client, world: World) -> None:
    response = client.get(path, headers=world.headers(LIST_ENDPOINTS[path]), params={"limit": limit})
    assert_invalid(response, "query", "limit")


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_limit_at_its_bounds_is_accepted(path: str, client: httpx.Client, world: World) -> None:
    for limit, most in (("1", 1), ("500", 500)):
        response = client.get(path, headers=world.headers(LIST_ENDPOINTS[path]), params={"limit": limit})
        assert response.status_code == 200, response.text
        assert 1 <= len(response.json()["items"]) <= most


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/api/v1/events", "since", "yesterday"),
        ("/api/v1/events", "until", "2024-13-01"),
        ("/api/v1/events", "severity", "loud"),
        ("/api/v1/events", "customer_id", "nobody"),
        ("/api/v1/customers", "status", "deleted"),
        ("/api/v1/agents", "type", "quantum"),
        ("/api/v1/recommendations", "status", "maybe"),
        ("/api/v1/recommendations", "priority", "urgent"),
        ("/api/v1/recommendations/summary", "customer_id", "1 OR 1=1"),
        ("/api/v1/optimizations", "recommendation_id", "x"),
        ("/api/v1/resources/scaling-events", "event_type", "scale_sideways"),
        ("/api/v1/resources/scaling-events", "success", "perhaps"),
        ("/api/v1/resources/metrics", "resource_type", "tpu"),
        ("/api/v1/resources/metrics", "start", "yesterday"),
        ("/api/v1/resources/metrics", "bucket", "0s"),
    ],
)
def test_bad_filter_value_is_refused(path: str, name: str, value: str, client: httpx.Client, world: World) -> None:
    response = client.get(path, headers=world.headers("operator"), params={name: value})
    assert_invalid(response, "query", name)


INJECTIONS = ["x' OR 1=1 --", "'; DROP TABLE events; --", "rightsizing' OR 'a'='a", "%", "_%"]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(("path", "name"), [("/api/v1/events", "event_type"), ("/api/v1/recommendations", "type")])
def test_sql_in_a_filter_is_only_a_value(path: str, name: str, value: str, client: httpx.Client, world: World) -> None:
    # The operator sees every row, so a filter that leaked into the SQL would return some.
    headers = world.headers("operator")
    assert client.get(path, headers=headers).json()["items"], "the check needs rows to exist"
    response = client.get(path, headers=headers, params={name: value})
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}
    assert client.get(path, headers=headers).json()["items"], "the table is still there"


# --- errors outside the API's own routes --------------------------------------------------------------------


def test_unknown_route_and_wrong_method_are_json_errors(client: httpx.Client, world: World) -> None:
    assert_error(client.get("/api/v1/nothing-here", headers=world.headers("operator")), 404, "not_found")
    assert_error(client.delete("/api/v1/customers/me", headers=world.headers("customer")), 405, "method_not_allowed")
