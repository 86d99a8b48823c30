"""Resource metrics and scaling events over HTTP: batch ingest, bucketed reads checked against numbers computed here,
tenant isolation, and scaling events with their duration."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from optiinfra.client import OptiInfraClient
from optiinfra.enums import AgentType, ResourceType
from tests.api.conftest import AgentHandle, Server, Tenant


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


def stored_count(api_server: Server, table: str, customer_id: uuid.UUID) -> int:
    with api_server.engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE customer_id = :id"),
                {"id": customer_id},
            ).scalar_one()
        )


@pytest.fixture
def resource_agent(make_agent: Callable[..., AgentHandle], tenant: Tenant) -> AgentHandle:
    return make_agent(AgentType.RESOURCE, serves=[tenant])


# --- metrics ---------------------------------------------------------------------------------------------------

Sample = tuple[str, str, str, datetime, float]  # instance, resource type, metric, time, value


def simulate(seed: int, origin: datetime, instances: list[str]) -> list[Sample]:
    """30 minutes of GPU and CPU utilization every 10 s per instance, from a fixed seed."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    for instance in instances:
        for resource_type, mean in (("gpu", 70.0), ("cpu", 35.0)):
            values = np.clip(rng.normal(mean, 12.0, 180), 0.0, 100.0)
            samples += [
                (instance, resource_type, "utilization", origin + timedelta(seconds=10 * index), float(value))
                for index, value in enumerate(values)
            ]
    return samples


def as_body(samples: list[Sample]) -> list[dict[str, Any]]:
    return [
        {
            "resource_type": resource_type,
            "instance_id": instance,
            "metric_name": metric,
            "metric_value": value,
            "unit": "percent",
            "timestamp": moment.isoformat(),
            "metadata": {"instance_type": "p3.2xlarge"},
        }
        for instance, resource_type, metric, moment, value in samples
    ]


RESOURCE_ORDER = {member.value: index for index, member in enumerate(ResourceType)}
Bucket = tuple[str, str, str, datetime, float, float, float, int]


def expected_buckets(samples: list[Sample], seconds: int) -> list[Bucket]:
    """(instance, resource type, metric, bucket start, avg, min, max, count), computed here from the samples, in the
    API's order (resource types in their enum order: gpu, cpu, memory, disk, network)."""
    groups: dict[tuple[str, str, str, datetime], list[float]] = defaultdict(list)
    for instance, resource_type, metric, moment, value in samples:
        start = datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, UTC)
        groups[(instance, resource_type, metric, start)].append(value)
    return [
        (*key, float(np.mean(values)), min(values), max(values), len(values))
        for key, values in sorted(
            groups.items(), key=lambda item: (item[0][0], RESOURCE_ORDER[item[0][1]], *item[0][2:])
        )
    ]


def as_tuples(buckets: list[dict[str, Any]]) -> list[Bucket]:
    return [
        (
            row["instance_id"],
            row["resource_type"],
            row["metric_name"],
            datetime.fromisoformat(row["bucket_start"]),
            row["avg"],
            row["min"],
            row["max"],
            row["count"],
        )
        for row in buckets
    ]


def assert_same_buckets(got: list[Bucket], expected: list[Bucket]) -> None:
    def exact(rows: list[Bucket]) -> list[tuple[Any, ...]]:
        return [(*row[:4], row[5], row[6], row[7]) for row in rows]

    assert exact(got) == exact(expected)
    assert [row[4] for row in got] == pytest.approx([row[4] for row in expected], rel=1e-12)


def query(client: OptiInfraClient, start: datetime, end: datetime, **filters: Any) -> dict[str, Any]:
    params = {"start": start.isoformat(), "end": end.isoformat(), **filters}
    answer: dict[str, Any] = client.request("GET", "/resources/metrics", params=params)
    return answer


def test_resource_metrics_are_ingested_and_bucketed_per_instance(
    tenant: Tenant, resource_agent: AgentHandle, api_server: Server
) -> None:
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1) + timedelta(seconds=5)
    samples = simulate(11, origin, ["i-0a1", "i-0b2"])
    answer = resource_agent.client.request(
        "POST", "/resources/metrics", json={"customer_id": str(tenant.id), "metrics": as_body(samples)}
    )
    assert answer == {"received": len(samples), "inserted": len(samples)}
    assert stored_count(api_server, "resource_metrics", tenant.id) == len(samples)

    start, end = origin - timedelta(minutes=5), origin + timedelta(hours=1)
    for bucket, seconds in (("300s", 300), ("1m", 60)):
        series = query(tenant.client, start, end, bucket=bucket)
        assert series["bucket_seconds"] == seconds
        assert_same_buckets(as_tuples(series["buckets"]), expected_buckets(samples, seconds))
        assert {row["customer_id"] for row in series["buckets"]} == {str(tenant.id)}
        assert {row["unit"] for row in series["buckets"]} == {"percent"}

    one = [row for row in samples if row[0] == "i-0b2" and row[1] == "gpu"]
    series = query(tenant.client, start, end, bucket="10m", instance_id="i-0b2", resource_type="gpu")
    assert_same_buckets(as_tuples(series["buckets"]), expected_buckets(one, 600))
    assert query(tenant.client, start, end, metric_name="temperature")["buckets"] == []


def test_customer_ingest_is_attributed_to_the_resource_agent_that_reports_it(
    tenant: Tenant, make_agent: Callable[..., AgentHandle], api_server: Server
) -> None:
    reporter = make_agent(AgentType.RESOURCE, serves=[tenant])
    make_agent(AgentType.RESOURCE, serves=[tenant])  # a newer resource agent, not the one that reports this customer
    make_agent(AgentType.RESOURCE)  # newer still, but it does not serve this customer
    now = datetime.now(UTC)
    reporter.client.request(
        "POST",
        "/resources/metrics",
        json={"customer_id": str(tenant.id), "metrics": as_body(simulate(1, now - timedelta(hours=2), ["i-1"])[:1])},
    )
    answer = tenant.client.request(
        "POST", "/resources/metrics", json={"metrics": as_body(simulate(2, now, ["i-1"])[:3])}
    )
    assert answer["inserted"] == 3
    with api_server.engine.connect() as connection:
        agents = connection.execute(
            text("SELECT DISTINCT agent_id FROM resource_metrics WHERE customer_id = :id"), {"id": tenant.id}
        ).scalars()
        assert list(agents) == [reporter.agent_id]


def test_another_tenant_never_sees_or_writes_the_tenants_metrics(
    tenant: Tenant,
    other_tenant: Tenant,
    make_agent: Callable[..., AgentHandle],
    operator: OptiInfraClient,
    http: httpx.Client,
    api_server: Server,
) -> None:
    reporter = make_agent(AgentType.RESOURCE, serves=[tenant])
    bystander = make_agent(AgentType.RESOURCE, serves=[other_tenant])
    origin = datetime.now(UTC) - timedelta(minutes=30)
    mine, theirs = simulate(3, origin, ["i-shared"]), simulate(4, origin, ["i-shared"])
    reporter.client.request(
        "POST", "/resources/metrics", json={"customer_id": str(tenant.id), "metrics": as_body(mine)}
    )
    bystander.client.request(
        "POST", "/resources/metrics", json={"customer_id": str(other_tenant.id), "metrics": as_body(theirs)}
    )
    start, end = origin - timedelta(minutes=1), origin + timedelta(hours=1)

    # The same instance id in two tenants: each sees only its own numbers, even when naming the other tenant.
    assert_same_buckets(as_tuples(query(tenant.client, start, end)["buckets"]), expected_buckets(mine, 60))
    assert_same_buckets(as_tuples(query(other_tenant.client, start, end)["buckets"]), expected_buckets(theirs, 60))
    assert query(other_tenant.client, start, end, customer_id=str(tenant.id))["buckets"] == []
    # Agents read the rows they wrote; the operator reads both tenants, kept apart per customer.
    assert_same_buckets(as_tuples(query(reporter.client, start, end)["buckets"]), expected_buckets(mine, 60))
    both = query(operator, start, end, instance_id="i-shared")["buckets"]
    assert {row["customer_id"] for row in both} >= {str(tenant.id), str(other_tenant.id)}
    operator_view = [row for row in both if row["customer_id"] == str(tenant.id)]
    assert_same_buckets(as_tuples(operator_view), expected_buckets(mine, 60))

    before = stored_count(api_server, "resource_metrics", tenant.id)
    refused = http.post(
        "/api/v1/resources/metrics",
        headers=bearer(other_tenant.customer.api_key),
        json={"customer_id": str(tenant.id), "metrics": as_body(theirs[:1])},
    )
    assert_error(refused, 404, "not_found")
    # An agent that does not serve the tenant is refused the same way.
    refused = http.post(
        "/api/v1/resources/metrics",
        headers=bearer(bystander.key),
        json={"customer_id": str(tenant.id), "metrics": as_body(theirs[:1])},
    )
    assert_error(refused, 404, "not_found")
    assert stored_count(api_server, "resource_metrics", tenant.id) == before


def test_invalid_resource_batch_is_refused_whole_with_every_bad_index(
    tenant: Tenant, resource_agent: AgentHandle, http: httpx.Client, api_server: Server
) -> None:
    body = as_body(simulate(5, datetime.now(UTC) - timedelta(minutes=10), ["i-9"])[:6])
    body[1]["resource_type"] = "tpu"
    body[2]["timestamp"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body[4]["unit"] = ""
    del body[5]["instance_id"]
    response = http.post(
        "/api/v1/resources/metrics",
        headers=bearer(resource_agent.key),
        json={"customer_id": str(tenant.id), "metrics": body},
    )
    error = assert_error(response, 422, "invalid_input")
    problems = {
        entry["index"]: [problem["field"] for problem in entry["problems"]] for entry in error["details"]["metrics"]
    }
    assert problems == {1: ["resource_type"], 2: ["timestamp"], 4: ["unit"], 5: ["instance_id"]}
    assert stored_count(api_server, "resource_metrics", tenant.id) == 0


# --- scaling events --------------------------------------------------------------------------------------------


def scaling_event(customer_id: uuid.UUID, executed_at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "customer_id": str(customer_id),
        "event_type": "scale_up",
        "trigger_reason": "GPU utilization above 85 % for 10 minutes",
        "before_state": {"instance_count": 4, "avg_utilization": 0.91},
        "after_state": {"instance_count": 6, "avg_utilization": 0.62},
        "success": True,
        "executed_at": executed_at.isoformat(),
        **overrides,
    }


def test_scaling_events_are_recorded_with_their_duration(
    tenant: Tenant, resource_agent: AgentHandle, operator: OptiInfraClient
) -> None:
    executed_at = datetime.now(UTC) - timedelta(minutes=10)
    done = resource_agent.client.request(
        "POST",
        "/resources/scaling-events",
        json=scaling_event(tenant.id, executed_at, completed_at=(executed_at + timedelta(seconds=95.5)).isoformat()),
    )
    assert (done["duration_seconds"], done["success"], done["agent_id"]) == (95.5, True, str(resource_agent.agent_id))
    assert (done["before_state"]["instance_count"], done["after_state"]["instance_count"]) == (4, 6)
    running = resource_agent.client.request(
        "POST",
        "/resources/scaling-events",
        json=scaling_event(tenant.id, executed_at + timedelta(minutes=5), event_type="scale_down", success=False),
    )
    assert running["duration_seconds"] is None

    listed = tenant.client.request("GET", "/resources/scaling-events")["items"]
    assert [(row["id"], row["event_type"], row["duration_seconds"]) for row in listed] == [
        (running["id"], "scale_down", None),
        (done["id"], "scale_up", 95.5),
    ]
    assert tenant.client.request("GET", f"/resources/scaling-events/{done['id']}") == done
    only_up = tenant.client.request("GET", "/resources/scaling-events", params={"event_type": "scale_up"})["items"]
    assert [row["id"] for row in only_up] == [done["id"]]

    recorded = operator.list_events(customer_id=tenant.id, event_type="resource.scaling_recorded").items
    assert [(event.data["subject"]["scaling_event_id"], event.data["duration_seconds"]) for event in recorded] == [
        (running["id"], None),
        (done["id"], 95.5),
    ]
    assert recorded[1].data["before"] == {"instance_count": 4, "avg_utilization": 0.91}
    assert recorded[1].agent_id == resource_agent.agent_id


def test_scaling_events_of_another_tenant_are_not_found(
    tenant: Tenant,
    other_tenant: Tenant,
    resource_agent: AgentHandle,
    make_agent: Callable[..., AgentHandle],
    http: httpx.Client,
) -> None:
    event = resource_agent.client.request(
        "POST", "/resources/scaling-events", json=scaling_event(tenant.id, datetime.now(UTC))
    )
    outsiders = [other_tenant.customer.api_key, make_agent(AgentType.RESOURCE).key]
    for key in outsiders:
        found = http.get(f"/api/v1/resources/scaling-events/{event['id']}", headers=bearer(key))
        nobody = http.get(f"/api/v1/resources/scaling-events/{uuid.uuid4()}", headers=bearer(key))
        assert_error(found, 404, "not_found")
        assert found.json()["error"]["message"] == nobody.json()["error"]["message"]
        listed = http.get(
            "/api/v1/resources/scaling-events", headers=bearer(key), params={"customer_id": str(tenant.id)}
        )
        assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"completed_at": "2020-01-01T00:00:00Z"}, 422),
        ({"executed_at": "2999-01-01T00:00:00Z"}, 422),
        ({"executed_at": "2025-01-01T00:00:00"}, 422),
        ({"event_type": "scale_sideways"}, 422),
        ({"before_state": None}, 422),
        ({"workflow_execution_id": str(uuid.uuid4())}, 404),
        ({"customer_id": str(uuid.uuid4())}, 404),
    ],
)
def test_bad_scaling_event_is_refused_and_nothing_is_recorded(
    overrides: dict[str, Any],
    status: int,
    tenant: Tenant,
    resource_agent: AgentHandle,
    http: httpx.Client,
    api_server: Server,
) -> None:
    body = {**scaling_event(tenant.id, datetime.now(UTC) - timedelta(minutes=1)), **overrides}
    response = http.post("/api/v1/resources/scaling-events", headers=bearer(resource_agent.key), json=body)
    assert_error(response, status, "invalid_input" if status == 422 else "not_found")
    assert stored_count(api_server, "scaling_events", tenant.id) == 0
