"""The event log's filters and pagination, and the operational endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from optiinfra.cli import app as cli_app
from optiinfra.db import migrations
from optiinfra.enums import EventSeverity
from tests.api.conftest import AgentHandle, Server, Tenant
from tests.conftest import DatabaseFactory, url_for_env


def test_event_pages_walk_the_whole_log_newest_first_without_gaps(agent: AgentHandle, tenant: Tenant) -> None:
    appended = [agent.client.append_event("batch.step", customer_id=tenant.id, data={"n": n}).id for n in range(23)]
    seen = []
    cursor = None
    while True:
        page = tenant.client.list_events(event_type="batch.step", limit=5, cursor=cursor)
        seen.extend(e.id for e in page.items)
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == list(reversed(appended))


def test_event_filters_by_severity_agent_and_time(agent: AgentHandle, tenant: Tenant) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    agent.client.append_event("disk.full", customer_id=tenant.id, severity=EventSeverity.CRITICAL)
    agent.client.append_event("disk.ok", customer_id=tenant.id)
    critical = tenant.client.list_events(severity="critical", since=start).items
    assert [e.event_type for e in critical] == ["disk.full"]
    assert tenant.client.list_events(agent_id=agent.agent_id, until=start).items == []
    since_start = tenant.client.list_events(agent_id=agent.agent_id, since=start).items
    # The agent's assignment to the tenant (made by the fixture a moment ago) may fall inside the window.
    assert sorted(e.event_type for e in since_start if e.event_type != "agent.customer_assigned") == [
        "disk.full",
        "disk.ok",
    ]


def test_healthz_and_readyz(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["revision"] == migrations.head_revision()


def test_metrics_count_requests_and_expose_domain_gauges(http: httpx.Client, tenant: Tenant) -> None:
    tenant.client.me()
    body = http.get("/metrics").text
    assert 'optiinfra_http_requests_total{method="GET",route="/api/v1/customers/me",status="200"}' in body
    assert "optiinfra_http_request_duration_seconds_bucket" in body
    assert "optiinfra_recommendations" in body
    assert "optiinfra_agents{" in body


def test_openapi_lists_the_api(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert "/api/v1/recommendations/{recommendation_id}/decision" in spec["paths"]


def test_serve_refuses_an_external_database_behind_head(create_database: DatabaseFactory, tmp_path) -> None:
    url = create_database()
    engine = create_engine(url)
    migrations.upgrade(engine, "004_resource_schema")
    engine.dispose()
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--port", "1"],
        env={"OPTIINFRA_DATABASE_URL": url_for_env(url), "OPTIINFRA_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "behind" in result.output
    assert "optiinfra db upgrade" in result.output


@pytest.mark.parametrize("body", [b"{", b'{"name": "x", "email": ', b"\xff\xfe"])
def test_broken_json_is_a_json_4xx(body: bytes, http: httpx.Client, api_server: Server) -> None:
    response = http.post(
        "/api/v1/customers",
        content=body,
        headers={"Authorization": f"Bearer {api_server.operator_key}", "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == "invalid_input"
