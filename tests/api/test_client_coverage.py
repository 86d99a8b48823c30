"""The Python client has a method for every operation of the API (issue 17), and the methods added for the
operations it lacked work against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from optiinfra.client import NOT_IN_CLIENT, OPERATIONS, ApiError, OptiInfraClient
from optiinfra.enums import AgentType
from tests.api.conftest import AgentHandle, Server, Tenant


def test_every_operation_has_a_client_method(api_server: Server) -> None:
    spec = httpx.get(f"{api_server.base_url}/openapi.json", timeout=30).json()
    operations = {operation["operationId"] for item in spec["paths"].values() for operation in item.values()}
    assert operations - NOT_IN_CLIENT == set(OPERATIONS), "add the new operation's method and its OPERATIONS entry"
    missing = [method for method in OPERATIONS.values() if not callable(getattr(OptiInfraClient, method, None))]
    assert not missing


def test_the_added_methods_against_a_real_server(
    api_server: Server, tenant: Tenant, make_agent: Callable[..., AgentHandle], operator: OptiInfraClient
) -> None:
    client = tenant.client
    agent = make_agent(AgentType.RESOURCE, serves=[tenant])

    assert client.healthz()
    assert client.readyz()["status"] == "ready"
    assert "optiinfra_http_requests_total" in client.metrics_text()

    assert client.list_baselines().items == []
    with pytest.raises(ApiError) as missing:
        client.get_regression(uuid.uuid4())
    assert missing.value.status_code == 404
    with pytest.raises(ApiError) as no_artifact:
        client.download_artifact(uuid.uuid4(), uuid.uuid4())
    assert no_artifact.value.status_code == 404
    result = client.ab_test("m", {"model_version": "a"}, {"model_version": "b"})
    assert result.control.count == 0

    settings = client.quality_settings()
    changed = settings.model_copy(update={"min_samples": settings.min_samples + 10})
    assert client.update_quality_settings(changed).min_samples == settings.min_samples + 10
    assert client.otlp_settings() == client.update_otlp_settings(client.otlp_settings())
    assert client.otlp_not_understood().model_dump()

    agent.client.acquire_lock(agent.agent_id, "fleet-a", purpose="resize")
    # The operator sees every agent's locks (other tests hold some on this shared server): this agent's one.
    assert [lock.resource for lock in operator.list_locks() if lock.agent_id == agent.agent_id] == ["fleet-a"]
    assert isinstance(agent.client.capabilities(agent.agent_id), list)
    agent.client.ingest_agent_metrics(
        agent.agent_id, [{"metric_name": "queue", "metric_value": 3, "recorded_at": datetime.now(UTC).isoformat()}]
    )
    series = agent.client.agent_metrics(agent.agent_id, metric_name="queue")
    assert [bucket.count for bucket in series.buckets] == [1]

    event = agent.client.record_scaling_event(
        tenant.id,
        event_type="scale_up",
        trigger_reason="load",
        before_state={"n": 1},
        after_state={"n": 2},
        executed_at=datetime.now(UTC),
    )
    assert [item.id for item in client.list_scaling_events().items] == [event.id]
    assert client.get_scaling_event(event.id).trigger_reason == "load"

    route = client.create_alert_route(name="on-call", destination="email", email_to="oncall@example.com")
    assert [item.id for item in client.list_alert_routes().items] == [route.id]
    assert client.update_alert_route(route.id, name="on-call 2").name == "on-call 2"
    assert client.get_alert_route(route.id).name == "on-call 2"
    alert = client.send_test_alert(route.id)
    assert client.get_alert(alert.id).id == alert.id
    assert alert.id in [item.id for item in client.list_alerts().items]
    client.delete_alert_route(route.id)
    with pytest.raises(ApiError):
        client.get_alert_route(route.id)
