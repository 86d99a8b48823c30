"""Agent state over HTTP: typed configs, the state row, resource locks (race, release, takeover), capabilities, and
metrics with bucketed reads checked against numbers computed here."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.agents import service as agent_service
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.enums import AgentStatus, AgentType
from tests.api.conftest import AgentHandle, Server


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


def events_of(operator: OptiInfraClient, agent_id: uuid.UUID, event_type: str) -> list[dict[str, Any]]:
    """The agent's events of one type, oldest first."""
    page = operator.list_events(agent_id=agent_id, event_type=event_type, limit=500)
    return [event.model_dump(mode="json") for event in reversed(page.items)]


def scalar(api_server: Server, sql: str, **params: Any) -> Any:
    with api_server.engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


# --- configs ---------------------------------------------------------------------------------------------------

GOOD_VALUES = [
    ("integer", "42", 42),
    ("integer", "-7", -7),
    ("integer", "9223372036854775807", 9223372036854775807),
    ("float", "0.25", 0.25),
    ("float", "-1.5e3", -1500.0),
    ("float", "3", 3.0),
    ("boolean", "true", True),
    ("boolean", "false", False),
    ("json", '{"zones": ["a", "b"], "max": 4}', {"zones": ["a", "b"], "max": 4}),
    ("json", "[1, 2]", [1, 2]),
    ("string", "spot-first", "spot-first"),
    ("string", "", ""),
]

BAD_VALUES = [
    ("integer", "4.2"),
    ("integer", "ten"),
    ("integer", ""),
    ("integer", "9223372036854775808"),
    ("integer", "1_000"),
    ("float", "NaN"),
    ("float", "inf"),
    ("float", "1e400"),
    ("float", "abc"),
    ("float", ""),
    ("boolean", "yes"),
    ("boolean", "True"),
    ("boolean", "1"),
    ("json", "{'single': 'quotes'}"),
    ("json", "{"),
    ("json", "NaN"),
]


@pytest.mark.parametrize(("config_type", "value", "parsed"), GOOD_VALUES)
def test_config_value_of_its_type_is_stored_and_parsed(
    config_type: str, value: str, parsed: Any, agent: AgentHandle
) -> None:
    stored = agent.client.request(
        "PUT",
        f"/agents/{agent.agent_id}/configs/setting.{config_type}",
        json={"value": value, "config_type": config_type},
    )
    assert (stored["key"], stored["value"], stored["config_type"], stored["parsed_value"]) == (
        f"setting.{config_type}",
        value,
        config_type,
        parsed,
    )
    listed = agent.client.request("GET", f"/agents/{agent.agent_id}/configs")
    assert [(row["key"], row["parsed_value"]) for row in listed] == [(f"setting.{config_type}", parsed)]


@pytest.mark.parametrize(("config_type", "value"), BAD_VALUES)
def test_config_value_not_of_its_type_is_refused(
    config_type: str, value: str, agent: AgentHandle, http: httpx.Client, api_server: Server
) -> None:
    response = http.put(
        f"/api/v1/agents/{agent.agent_id}/configs/limit",
        headers=bearer(agent.key),
        json={"value": value, "config_type": config_type},
    )
    error = assert_error(response, 422, "invalid_input")
    assert [problem["location"] for problem in error["details"]["problems"]] == [["body", "value"]]
    assert config_type in error["message"]
    assert scalar(api_server, "SELECT count(*) FROM agent_configs WHERE agent_id = :id", id=agent.agent_id) == 0


def test_config_changes_write_events_with_old_and_new_value(agent: AgentHandle, operator: OptiInfraClient) -> None:
    path = f"/agents/{agent.agent_id}/configs/max_parallel_migrations"
    operator.request("PUT", path, json={"value": "2", "config_type": "integer", "description": "per customer"})
    agent.client.request("PUT", path, json={"value": "2", "config_type": "integer", "description": "per customer"})
    agent.client.request("PUT", path, json={"value": "5", "config_type": "integer", "description": "per customer"})
    changed = agent.client.request("PUT", path, json={"value": "0.5", "config_type": "float"})
    assert (changed["parsed_value"], changed["description"]) == (0.5, None)

    changes = events_of(operator, agent.agent_id, "agent.config_changed")
    assert [(event["data"].get("before"), event["data"]["after"]) for event in changes] == [
        (None, {"value": "2", "config_type": "integer", "description": "per customer"}),
        (
            {"value": "2", "config_type": "integer", "description": "per customer"},
            {"value": "5", "config_type": "integer", "description": "per customer"},
        ),
        (
            {"value": "5", "config_type": "integer", "description": "per customer"},
            {"value": "0.5", "config_type": "float", "description": None},
        ),
    ], "setting the same value again is no change and writes no event"
    assert all(event["customer_id"] is None for event in changes)
    assert [event["data"]["actor"]["role"] for event in changes] == ["operator", "agent", "agent"]


# --- state -----------------------------------------------------------------------------------------------------


def test_state_row_is_created_on_first_use_and_follows_reports(
    agent: AgentHandle, operator: OptiInfraClient, api_server: Server
) -> None:
    path = f"/agents/{agent.agent_id}/state"
    fresh = agent.client.request("GET", path)
    assert (fresh["current_status"], fresh["active_workflows"], fresh["locks"], fresh["resource_usage"]) == (
        "idle",
        [],
        {},
        {},
    )
    busy = agent.client.request(
        "PATCH",
        path,
        json={"current_status": "busy", "resource_usage": {"cpu": 0.7}, "metadata": {"region": "eu-west-1"}},
    )
    assert (busy["current_status"], busy["resource_usage"], busy["metadata"]) == (
        "busy",
        {"cpu": 0.7},
        {"region": "eu-west-1"},
    )
    assert busy["last_activity"] > fresh["last_activity"]
    # Usage replaces the snapshot, metadata merges, and neither is an event.
    later = operator.request("PATCH", path, json={"resource_usage": {"gpu": 0.2}, "metadata": {"zone": "b"}})
    assert (later["current_status"], later["resource_usage"], later["metadata"]) == (
        "busy",
        {"gpu": 0.2},
        {"region": "eu-west-1", "zone": "b"},
    )
    assert scalar(api_server, "SELECT count(*) FROM agent_states WHERE agent_id = :id", id=agent.agent_id) == 1
    changes = events_of(operator, agent.agent_id, "agent.state_changed")
    assert [
        (event["data"]["before"]["current_status"], event["data"]["after"]["current_status"]) for event in changes
    ] == [("idle", "busy")]


def test_state_refuses_workflows_the_agent_does_not_run(agent: AgentHandle, http: httpx.Client) -> None:
    nobody = str(uuid.uuid4())
    response = http.patch(
        f"/api/v1/agents/{agent.agent_id}/state", headers=bearer(agent.key), json={"active_workflows": [nobody]}
    )
    assert assert_error(response, 422, "invalid_input")["details"]["workflow_execution_ids"] == [nobody]


# --- locks -----------------------------------------------------------------------------------------------------


def acquire(http: httpx.Client, handle: AgentHandle, resource: str, **body: Any) -> httpx.Response:
    return http.post(
        f"/api/v1/agents/{handle.agent_id}/locks/{resource}", headers=bearer(handle.key), json=body or None
    )


def holders(api_server: Server, resource: str) -> list[uuid.UUID]:
    with api_server.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT agent_id FROM agent_states WHERE locks ? :resource"), {"resource": resource}
        )
        return [row[0] for row in rows]


def race(
    barrier: threading.Barrier,
    answers: dict[uuid.UUID, httpx.Response],
    client: httpx.Client,
    handle: AgentHandle,
    resource: str,
) -> None:
    """One contender: wait for the other, then ask for the lock."""
    barrier.wait()
    answers[handle.agent_id] = acquire(client, handle, resource)


def test_two_agents_racing_for_one_lock_one_wins_and_the_other_learns_who(
    make_agent: Callable[..., AgentHandle], api_server: Server, operator: OptiInfraClient
) -> None:
    first, second = make_agent(), make_agent()
    names = {
        first.agent_id: operator.get_agent(first.agent_id).name,
        second.agent_id: operator.get_agent(second.agent_id).name,
    }
    clients = [httpx.Client(base_url=api_server.base_url, timeout=30) for _ in range(2)]
    try:
        for client in clients:  # connections open before the race, so both requests leave at once
            assert client.get("/healthz").status_code == 200
        for round_number in range(5):
            resource = f"gpu-cluster-{round_number}-{uuid.uuid4().hex[:6]}"
            barrier = threading.Barrier(2)
            answers: dict[uuid.UUID, httpx.Response] = {}

            threads = [
                threading.Thread(target=race, args=(barrier, answers, client, handle, resource))
                for client, handle in zip(clients, (first, second), strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            statuses = sorted(response.status_code for response in answers.values())
            assert statuses == [200, 409], [response.text for response in answers.values()]
            winner = next(agent_id for agent_id, response in answers.items() if response.status_code == 200)
            loser = next(agent_id for agent_id, response in answers.items() if response.status_code == 409)
            error = assert_error(answers[loser], 409, "conflict")
            assert (error["details"]["holder_agent_id"], error["details"]["holder_agent_name"]) == (
                str(winner),
                names[winner],
            )
            assert names[winner] in error["message"]
            assert str(winner) in error["message"]
            assert answers[winner].json()["agent_id"] == str(winner)
            assert holders(api_server, resource) == [winner]
            acquired = events_of(operator, winner, "agent.lock_acquired")
            assert [event["data"]["subject"]["resource"] for event in acquired].count(resource) == 1
            assert resource not in [
                event["data"]["subject"]["resource"] for event in events_of(operator, loser, "agent.lock_acquired")
            ]
    finally:
        for client in clients:
            client.close()


def test_lock_is_reentrant_for_its_holder_and_free_after_release(
    make_agent: Callable[..., AgentHandle], http: httpx.Client, operator: OptiInfraClient, api_server: Server
) -> None:
    holder, other = make_agent(), make_agent()
    resource = f"node-pool-{uuid.uuid4().hex[:8]}"
    taken = acquire(http, holder, resource, purpose="spot rollout phase 1")
    assert taken.status_code == 200, taken.text
    again = acquire(http, holder, resource)
    assert again.json() == taken.json(), "asking again for a held lock changes nothing"
    refused = assert_error(acquire(http, other, resource), 409, "conflict")
    assert refused["details"]["purpose"] == "spot rollout phase 1"
    listed = [lock for lock in operator.request("GET", "/locks") if lock["resource"] == resource]
    assert listed == [taken.json()]
    assert (taken.json()["holder_status"], taken.json()["is_expired"]) == ("starting", False)

    # Only the holder (or the operator for it) releases; asking another agent's path to release is 404.
    not_held = http.delete(f"/api/v1/agents/{other.agent_id}/locks/{resource}", headers=bearer(other.key))
    assert_error(not_held, 404, "not_found")
    released = http.delete(f"/api/v1/agents/{holder.agent_id}/locks/{resource}", headers=bearer(holder.key))
    assert released.status_code == 200, released.text
    assert released.json()["resource"] == resource
    assert holders(api_server, resource) == []
    assert acquire(http, other, resource).status_code == 200
    by_operator = http.delete(
        f"/api/v1/agents/{other.agent_id}/locks/{resource}", headers=bearer(api_server.operator_key)
    )
    assert by_operator.status_code == 200, by_operator.text
    assert holders(api_server, resource) == []

    assert len(events_of(operator, holder.agent_id, "agent.lock_acquired")) == 1
    assert [event["data"]["actor"]["role"] for event in events_of(operator, other.agent_id, "agent.lock_released")] == [
        "operator"
    ]
    assert [
        event["data"]["subject"]["resource"] for event in events_of(operator, holder.agent_id, "agent.lock_released")
    ] == [resource]


@pytest.mark.parametrize("resource", ["gpu cluster", "-leading-dash", "a" * 256, "caf\u00e9"])
def test_lock_resource_name_outside_the_allowed_characters_is_refused(
    resource: str, agent: AgentHandle, http: httpx.Client, api_server: Server
) -> None:
    error = assert_error(acquire(http, agent, resource), 422, "invalid_input")
    assert [problem["location"] for problem in error["details"]["problems"]] == [["path", "resource"]]
    assert scalar(api_server, "SELECT count(*) FROM agent_states WHERE agent_id = :id", id=agent.agent_id) == 0


def _mark_failed(api_server: Server, handle: AgentHandle) -> None:
    """The holder's heartbeats stop: the health sweep, run with a clock 11 intervals later, marks it failed."""
    handle.client.heartbeat(handle.agent_id)
    now = datetime.now(UTC)
    with api_server.engine.begin() as connection:
        connection.execute(
            text("UPDATE agents SET last_heartbeat = :at WHERE id = :id"),
            {"at": now - timedelta(seconds=11 * 30), "id": handle.agent_id},
        )
    with Session(api_server.engine) as session, session.begin():
        agent_service.sweep_health(session, now)


def _mark_stopped(api_server: Server, handle: AgentHandle) -> None:
    handle.client.heartbeat(handle.agent_id, status=AgentStatus.STOPPED)


@pytest.mark.parametrize(("how", "mark"), [("failed", _mark_failed), ("stopped", _mark_stopped)])
def test_lock_of_a_failed_or_stopped_holder_is_taken_over(
    how: str,
    mark: Callable[[Server, AgentHandle], None],
    make_agent: Callable[..., AgentHandle],
    http: httpx.Client,
    operator: OptiInfraClient,
    api_server: Server,
) -> None:
    holder, successor = make_agent(heartbeat_interval_seconds=30), make_agent()
    resource = f"gpu-cluster-{uuid.uuid4().hex[:8]}"
    assert acquire(http, holder, resource).status_code == 200
    mark(api_server, holder)
    assert operator.get_agent(holder.agent_id).status == how
    listed = [lock for lock in operator.request("GET", "/locks") if lock["resource"] == resource]
    assert [(lock["agent_id"], lock["holder_status"], lock["is_expired"]) for lock in listed] == [
        (str(holder.agent_id), how, True)
    ]

    taken = acquire(http, successor, resource)
    assert taken.status_code == 200, taken.text
    assert taken.json()["agent_id"] == str(successor.agent_id)
    assert holders(api_server, resource) == [successor.agent_id]
    expired = events_of(operator, holder.agent_id, "agent.lock_expired")
    assert [(event["data"]["subject"]["resource"], event["data"]["taken_over_by"]) for event in expired] == [
        (resource, str(successor.agent_id))
    ]
    assert expired[0]["data"]["before"]["holder_status"] == how
    assert expired[0]["severity"] == "warning"
    # The old holder, back to health, finds the lock gone and is refused like anyone else.
    holder.client.heartbeat(holder.agent_id)
    assert assert_error(acquire(http, holder, resource), 409, "conflict")["details"]["holder_agent_id"] == str(
        successor.agent_id
    )


def test_a_degraded_holder_keeps_its_lock(
    make_agent: Callable[..., AgentHandle], http: httpx.Client, operator: OptiInfraClient
) -> None:
    holder, other = make_agent(), make_agent()
    resource = f"gpu-cluster-{uuid.uuid4().hex[:8]}"
    assert acquire(http, holder, resource).status_code == 200
    holder.client.heartbeat(holder.agent_id, status=AgentStatus.DEGRADED)
    assert assert_error(acquire(http, other, resource), 409, "conflict")["details"]["holder_status"] == "degraded"


# --- capabilities ----------------------------------------------------------------------------------------------


def test_capabilities_are_enabled_disabled_and_versioned_and_survive_re_registration(
    operator: OptiInfraClient, api_server: Server
) -> None:
    name = f"resource-{uuid.uuid4().hex[:8]}"
    registered = operator.register_agent(AgentType.RESOURCE, name, capabilities=["autoscale", "rightsizing"])
    assert registered.api_key is not None
    agent = operator.with_key(registered.api_key)
    path = f"/agents/{registered.id}/capabilities"
    listed = agent.request("GET", path)
    assert [(row["capability_name"], row["enabled"], row["capability_version"]) for row in listed] == [
        ("autoscale", True, "1.0.0"),
        ("rightsizing", True, "1.0.0"),
    ]
    disabled = agent.request("PATCH", f"{path}/autoscale", json={"enabled": False, "capability_version": "2.1.0"})
    assert (disabled["enabled"], disabled["capability_version"]) == (False, "2.1.0")
    configured = operator.request("PATCH", f"{path}/rightsizing", json={"config": {"min_nodes": 2}})
    assert (configured["enabled"], configured["config"]) == (True, {"min_nodes": 2})

    # Registration is the one source of truth for which capabilities exist; settings of those that stay are kept.
    operator.register_agent(AgentType.RESOURCE, name, capabilities=["autoscale", "spot"])
    after = agent.request("GET", path)
    assert [(row["capability_name"], row["enabled"], row["capability_version"]) for row in after] == [
        ("autoscale", False, "2.1.0"),
        ("spot", True, "1.0.0"),
    ]
    assert operator.get_agent(registered.id).capabilities == ["autoscale", "spot"]
    with api_server.engine.connect() as connection:
        table = connection.execute(
            text("SELECT capability_name FROM agent_capabilities WHERE agent_id = :id ORDER BY 1"),
            {"id": registered.id},
        ).scalars()
        assert list(table) == ["autoscale", "spot"]
    gone = operator.with_key(registered.api_key)
    with pytest.raises(ApiError) as missing:
        gone.request("PATCH", f"{path}/rightsizing", json={"enabled": True})
    assert missing.value.status_code == 404

    changes = events_of(operator, registered.id, "agent.capability_changed")
    assert [
        (event["data"]["subject"]["capability_name"], event["data"]["before"], event["data"]["after"])
        for event in changes
    ] == [
        (
            "autoscale",
            {"enabled": True, "capability_version": "1.0.0", "config": {}, "description": None},
            {"enabled": False, "capability_version": "2.1.0", "config": {}, "description": None},
        ),
        (
            "rightsizing",
            {"enabled": True, "capability_version": "1.0.0", "config": {}, "description": None},
            {"enabled": True, "capability_version": "1.0.0", "config": {"min_nodes": 2}, "description": None},
        ),
    ]


# --- metrics ---------------------------------------------------------------------------------------------------


def agent_metric_count(api_server: Server, agent_id: uuid.UUID) -> int:
    return int(scalar(api_server, "SELECT count(*) FROM agent_metrics WHERE agent_id = :id", id=agent_id))


def test_invalid_metrics_batch_is_refused_whole_with_every_bad_index(
    agent: AgentHandle, http: httpx.Client, api_server: Server
) -> None:
    now = datetime.now(UTC)
    good = {"metric_name": "queue_depth", "metric_value": 3, "recorded_at": now.isoformat()}
    batch = [
        good,
        {**good, "metric_value": "lots"},
        good,
        {**good, "recorded_at": (now + timedelta(minutes=10)).isoformat()},
        {**good, "recorded_at": "2025-01-01T00:00:00"},
        {**good, "metric_type": "summary"},
        {"metric_value": 1},
        {**good, "surprise": True},
    ]
    response = http.post(f"/api/v1/agents/{agent.agent_id}/metrics", headers=bearer(agent.key), json={"metrics": batch})
    error = assert_error(response, 422, "invalid_input")
    assert [entry["index"] for entry in error["details"]["metrics"]] == [1, 3, 4, 5, 6, 7]
    assert error["details"]["invalid_count"] == 6
    fields = {
        entry["index"]: [problem["field"] for problem in entry["problems"]] for entry in error["details"]["metrics"]
    }
    assert fields == {
        1: ["metric_value"],
        3: ["recorded_at"],
        4: ["recorded_at"],
        5: ["metric_type"],
        6: ["metric_name"],
        7: ["surprise"],
    }
    assert agent_metric_count(api_server, agent.agent_id) == 0


def expected_buckets(
    samples: list[tuple[str, datetime, float]], seconds: int
) -> list[tuple[str, datetime, float, float, float, int]]:
    """(name, bucket start, avg, min, max, count) per name and epoch-aligned bucket, computed here from the samples."""
    groups: dict[tuple[str, datetime], list[float]] = defaultdict(list)
    for name, moment, value in samples:
        start = datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, UTC)
        groups[(name, start)].append(value)
    return [
        (name, start, float(np.mean(values)), min(values), max(values), len(values))
        for (name, start), values in sorted(groups.items())
    ]


def as_tuples(buckets: list[dict[str, Any]]) -> list[tuple[str, datetime, float, float, float, int]]:
    return [
        (
            row["metric_name"],
            datetime.fromisoformat(row["bucket_start"]),
            row["avg"],
            row["min"],
            row["max"],
            row["count"],
        )
        for row in buckets
    ]


def assert_same_buckets(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert [(row[0], row[1], row[3], row[4], row[5]) for row in got] == [
        (row[0], row[1], row[3], row[4], row[5]) for row in expected
    ]
    assert [row[2] for row in got] == pytest.approx([row[2] for row in expected], rel=1e-12)


def test_metrics_are_stored_and_read_back_in_buckets(agent: AgentHandle, api_server: Server) -> None:
    rng = np.random.default_rng(7)
    # 20 minutes of samples every 7 s for two series, starting off the minute so buckets are uneven at the edges.
    origin = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40) + timedelta(seconds=13)
    samples = [
        (name, origin + timedelta(seconds=7 * index), float(value))
        for name, values in (("queue_depth", rng.poisson(12, 172)), ("latency_ms", rng.normal(250, 40, 172)))
        for index, value in enumerate(values)
    ]
    body = [
        {"metric_name": name, "metric_value": value, "recorded_at": moment.isoformat(), "tags": {"pool": "a"}}
        for name, moment, value in samples
    ]
    answer = agent.client.request("POST", f"/agents/{agent.agent_id}/metrics", json={"metrics": body})
    assert answer == {"received": len(samples), "inserted": len(samples)}
    assert agent_metric_count(api_server, agent.agent_id) == len(samples)

    start, end = origin - timedelta(minutes=1), origin + timedelta(minutes=30)
    path = f"/agents/{agent.agent_id}/metrics"
    for bucket, seconds in (("60s", 60), ("5m", 300), ("45", 45)):
        series = agent.client.request(
            "GET", path, params={"start": start.isoformat(), "end": end.isoformat(), "bucket": bucket}
        )
        assert series["bucket_seconds"] == seconds
        assert_same_buckets(as_tuples(series["buckets"]), expected_buckets(samples, seconds))
        first = series["buckets"][0]
        assert datetime.fromisoformat(first["bucket_end"]) - datetime.fromisoformat(first["bucket_start"]) == timedelta(
            seconds=seconds
        )

    # One series, and a range cutting through the samples: only samples in [start, end) count.
    cut_start, cut_end = origin + timedelta(seconds=100), origin + timedelta(seconds=700)
    inside = [row for row in samples if row[0] == "latency_ms" and cut_start <= row[1] < cut_end]
    series = agent.client.request(
        "GET",
        path,
        params={
            "metric_name": "latency_ms",
            "start": cut_start.isoformat(),
            "end": cut_end.isoformat(),
            "bucket": "2m",
        },
    )
    assert_same_buckets(as_tuples(series["buckets"]), expected_buckets(inside, 120))
    assert sum(row["count"] for row in series["buckets"]) == len(inside)


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"bucket": "0s"}, "bucket"),
        ({"bucket": "31d"}, "bucket"),
        ({"bucket": "1w"}, "bucket"),
        ({"bucket": "1s", "start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}, "bucket"),
        ({"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "start"),
        ({"start": "2025-01-01T00:00:00"}, "start"),
    ],
)
def test_bad_bucket_or_range_is_refused(
    params: dict[str, str], location: str, agent: AgentHandle, http: httpx.Client
) -> None:
    response = http.get(f"/api/v1/agents/{agent.agent_id}/metrics", headers=bearer(agent.key), params=params)
    error = assert_error(response, 422, "invalid_input")
    assert [problem["location"] for problem in error["details"]["problems"]] == [["query", location]]
